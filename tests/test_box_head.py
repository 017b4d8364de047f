"""The box head (networks/box_head.py), its box estimator (tracking/box_estimators.py) and its training stage."""
import numpy as np
import pytest
import torch

from mlt_plugin.build import build_tracker
from mlt_plugin.networks.box_head import BoxHead, decode_boxes, giou_loss, side_targets
from mlt_plugin.networks.weights_io import load_box_head, save_box_head
from mlt_plugin.training.sampling import stretch
from mlt_plugin.tracking import crops

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("channels, template, search", [(112, 16, 32), (256, 8, 24)], ids=["lite", "paper"])
def test_head_gives_sides_and_a_score_on_the_response_grid(channels, template, search):
    head = BoxHead(channels, 16).eval()
    sides, logits = head(torch.randn(2, channels, template, template), torch.randn(2, channels, search, search))
    assert sides.shape == (2, 4, 17, 17) and logits.shape == (2, 17, 17)
    assert (sides > 0).all() and torch.isfinite(sides).all()
    # The tracker computes the kernel once per target and locates with it: the same as the whole forward.
    x, z = torch.randn(1, channels, template, template), torch.randn(1, channels, search, search)
    assert torch.equal(head.locate(head.kernel(x), z, template)[0], head(x, z)[0])


def test_boxes_decode_from_the_sides_of_a_hand_made_case():
    sides = torch.zeros(4, 17, 17)
    sides[:, 8, 8] = torch.tensor([10.0, 20.0, 30.0, 40.0])  # l, t, r, b at the centre cell
    sides[:, 10, 5] = torch.tensor([8.0, 8.0, 8.0, 8.0])  # a 16 px square around cell (10, 5)
    boxes = decode_boxes(sides)
    assert boxes[:, 8, 8].tolist() == [10.0, 10.0, 40.0, 60.0]  # cx = (r - l) / 2, cy = (b - t) / 2, w, h
    assert boxes[:, 10, 5].tolist() == [-24.0, 16.0, 16.0, 16.0]  # the cell sits 3 cells left, 2 down
    # The training targets are the inverse: every cell inside a box decodes back to that box.
    box = torch.tensor([[12.0, -20.0, 70.0, 50.0]])
    targets = side_targets(box, 17)[0]
    inside = targets.amin(0) > 0
    assert inside.sum() > 20
    assert torch.allclose(decode_boxes(targets)[:, inside], box[0].view(4, 1).expand(4, int(inside.sum())))


def test_giou_loss_of_hand_made_boxes():
    same = torch.tensor([[5.0, 6.0, 7.0, 8.0]])
    assert giou_loss(same, same).item() == pytest.approx(0.0, abs=1e-6)
    inner, outer = torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    assert giou_loss(inner, outer).item() == pytest.approx(1 - 4 / 16)  # nested: GIoU = IoU
    # Side by side, touching, 2 x 2 each: IoU 0, the enclosing 4 x 2 box is their union: GIoU 0.
    left, right = torch.tensor([[2.0, 1.0, 0.0, 1.0]]), torch.tensor([[0.0, 1.0, 2.0, 1.0]])
    assert giou_loss(left, right).item() == pytest.approx(1.0)
    # Apart by 2: IoU 0, enclosing 6 x 2 = 12 over a union of 8: GIoU -1/3.
    far = torch.tensor([[-2.0, 1.0, 4.0, 1.0]])
    assert giou_loss(left, far).item() == pytest.approx(1 + 4 / 12)


def test_stretch_moves_the_target_with_the_crop():
    z = np.zeros((255, 255, 3), np.uint8)
    z[107:147, 97:157] = 255  # a 60 x 40 target centred at the crop centre (127, 127)
    rng = np.random.default_rng(3)
    stretched, center, size = stretch(rng, z, np.zeros(2), np.array([40.0, 60.0]), 0.6)
    rows, cols = np.nonzero(stretched[..., 0] > 127)
    assert center.tolist() == [0.0, 0.0]
    assert rows.max() - rows.min() + 1 == pytest.approx(size[0], abs=1.5)
    assert cols.max() - cols.min() + 1 == pytest.approx(size[1], abs=1.5)
    assert size[0] != pytest.approx(40.0, abs=1.0)  # the aspect did change


@pytest.fixture
def head_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "box.safetensors"
    save_box_head(path, BoxHead(112, 16), "lite")
    return path


def test_head_file_round_trip_and_clear_errors(head_file, tmp_path):
    head = load_box_head(head_file, "lite")
    assert head.channels == 16 and head.in_channels == 112
    with pytest.raises(ValueError, match="trained on the 'lite' extractor"):
        load_box_head(head_file, "paper")
    with pytest.raises(ValueError, match="no box head ships for the 'paper'"):
        load_box_head(None, "paper")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_box_head(tmp_path / "missing.safetensors", "lite")


def _count_crops(monkeypatch):
    calls = []
    original = crops.crop_square
    monkeypatch.setattr("mlt_plugin.tracking.tracker.crop_square", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def _frame(seed):
    return np.random.default_rng(seed).integers(0, 255, (120, 160, 3), dtype=np.uint8)


@pytest.mark.parametrize("estimator, crops_per_frame", [("head", 1), ("scale_search", 3)])
def test_crops_per_frame(estimator, crops_per_frame, head_file, monkeypatch):
    tracker = build_tracker(f"lite@box_estimator={estimator},precision=fp32", box_head_weights=str(head_file))
    tracker.initialize(_frame(0), [60, 40, 30, 20])
    calls = _count_crops(monkeypatch)
    for seed in (1, 2):
        out = tracker.track(_frame(seed))
        assert np.isfinite(out["target_bbox"]).all() and out["target_bbox"][2] > 0
    assert len(calls) == 2 * crops_per_frame


def test_head_estimator_moves_to_the_peak_and_takes_the_heads_box(head_file, monkeypatch):
    """A hand-made response (one peak) and hand-made sides: no penalty, no window, learning rate 1."""
    tracker = build_tracker("lite@box_estimator=head,precision=fp32,head_window_influence=0.0,head_penalty=0.0,"
                            "head_learning_rate=1.0", box_head_weights=str(head_file))
    tracker.initialize(_frame(0), [60, 40, 30, 20])
    center, side = tracker.center.copy(), tracker.search_side
    logits = np.full((1, 17, 17), -50.0, np.float32)
    logits[0, 10, 5] = 50.0
    sides = torch.full((1, 4, 17, 17), 8.0)
    sides[0, :, 10, 5] = torch.tensor([20.0, 10.0, 40.0, 30.0])  # l, t, r, b at the peak's cell
    monkeypatch.setattr(tracker, "matcher", lambda conv4: torch.from_numpy(logits))
    monkeypatch.setattr(tracker.box_estimator.head, "locate", lambda *a: (sides, torch.zeros(1, 17, 17)))
    box = tracker.track(_frame(1))["target_bbox"]
    per_crop = side / 255
    dx, dy = (5 - 8) * 8 + (40 - 20) / 2, (10 - 8) * 8 + (30 - 10) / 2  # cell offset + the sides' centre
    expected_center = center + np.array([dx, dy]) * per_crop
    expected_size = np.array([20 + 40, 10 + 30]) * per_crop
    assert box[2:] == pytest.approx(expected_size.tolist())
    assert [box[0] + box[2] / 2, box[1] + box[3] / 2] == pytest.approx(expected_center.tolist())
    # The context patch's label centre is where the tracker moved to, in cells of that crop.
    assert tracker.memory.patches[-1].center.tolist() == pytest.approx([dy / 8, dx / 8])
