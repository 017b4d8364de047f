"""Distillation from NanoTrack v2 (issue 31): the teacher's map on the student's grid, the soft-label loss,
and the matching stage trained with both. The teacher's files come from ../shared/models (skipped where absent)."""
import numpy as np
import pytest
import torch

from mlt_plugin.cli import main
from mlt_plugin.geometry import RESPONSE_SIZE
from mlt_plugin.networks import MatchingNetwork
from mlt_plugin.networks.losses import soft_logistic_loss
from mlt_plugin.networks.weights_io import load_matching
from mlt_plugin.sequences import load_sequences
from mlt_plugin.training.datasets import load_source
from mlt_plugin.training.sampling import CropSampler, PairDataset
from mlt_plugin.training.teacher import NanoTrackTeacher, feature_distillation_loss, on_teacher_cells, resampling_matrix
from mlt_plugin.training.trainer import MatchingStage

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def teacher(shared_models):
    return NanoTrackTeacher(shared_models / "nanotrack_v2")


def test_resampling_puts_the_student_grid_on_the_teachers_cells():
    weights = resampling_matrix()
    assert weights.shape == (RESPONSE_SIZE, 16)
    np.testing.assert_allclose(weights.sum(1), 1, rtol=1e-6)
    # Student cells of 8 px: the centre cell on teacher cell 8, the ends on 4 and 12, odd cells halfway.
    assert weights[8, 8] == 1 and weights[0, 4] == 1 and weights[16, 12] == 1
    np.testing.assert_allclose(weights[1, 4:6], [0.5, 0.5])


def test_student_features_are_sampled_where_the_teachers_cells_lie():
    """Student cell i of 24 sits 8 (i - 11.5) px from the crop centre, teacher cell j 16 (j - 8) px: features
    that hold their own offset give the teacher's offsets back, on its cells 3 to 13."""
    offsets = 8 * (torch.arange(24.0) - 11.5)
    student = torch.stack([offsets.view(1, -1).expand(24, -1), offsets.view(-1, 1).expand(-1, 24)]).unsqueeze(0)
    sampled, cells = on_teacher_cells(student)
    assert (cells.start, cells.stop) == (3, 14)
    expected = 16 * (torch.arange(3.0, 14.0) - 8)
    torch.testing.assert_close(sampled[0, 0], expected.view(1, -1).expand(11, -1))
    torch.testing.assert_close(sampled[0, 1], expected.view(-1, 1).expand(-1, 11))


def test_feature_loss_is_zero_for_features_that_point_the_teachers_way():
    """Teacher cell j is sampled halfway between student cells 2 (j - 3) + 1 and + 2: where both hold 3x the
    teacher's features the loss is 0 (cosine: the scale does not matter); other features cost more."""
    teacher = torch.randn(2, 48, 16, 16)
    student = torch.randn(2, 48, 24, 24)
    student[:, :, 1:23, 1:23] = 3 * teacher[:, :, 3:14, 3:14].repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert feature_distillation_loss(student, teacher) < 1e-5
    assert feature_distillation_loss(torch.randn_like(student), teacher) > 0.5


def test_soft_logistic_loss_is_smallest_where_the_student_matches_the_teacher():
    targets = torch.tensor([[[0.1, 0.9]]])
    exact = torch.logit(targets)
    logits = exact.clone().requires_grad_(True)
    soft_logistic_loss(logits, targets).backward()
    torch.testing.assert_close(logits.grad, torch.zeros_like(logits), atol=1e-6, rtol=0)
    assert soft_logistic_loss(exact, targets) < soft_logistic_loss(exact + 1, targets)


def test_teacher_map_peaks_on_the_target(teacher, shared_data):
    """Real crop pairs of Bird2 with the target shifted up to 3 cells: NanoTrack's most confident cells sit on it."""
    source = load_source("seq", str(shared_data / "otb"))
    source.trajectories = [t for t in source.trajectories if t.name == "Bird2"]
    batch = PairDataset([source], 1, batch_size=8, sampler=CropSampler(shift_jitter=24.0), hard=False, teacher=teacher)[0]
    assert batch["teacher"].shape == (8, RESPONSE_SIZE, RESPONSE_SIZE)
    assert batch["teacher_features"].shape == (8, 48, 16, 16)
    grid = np.arange(RESPONSE_SIZE) - (RESPONSE_SIZE - 1) / 2
    errors = []
    for probability, center in zip(batch["teacher"].numpy(), batch["centers"].numpy()):
        assert probability.min() >= 0 and probability.max() <= 1
        confident = probability * (probability >= 0.5 * probability.max())
        peak = np.array([(confident.sum(1) * grid).sum(), (confident.sum(0) * grid).sum()]) / confident.sum()
        errors.append(np.abs(peak - center).max())
    assert np.median(errors) < 1.5, errors


def test_teacher_refuses_other_crop_sizes(teacher):
    with pytest.raises(ValueError, match="127 and 255 px"):
        teacher(np.zeros((127, 127, 3), np.uint8), np.zeros((239, 239, 3), np.uint8))


def test_teacher_names_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nanotrack_backbone_sim.onnx"):
        NanoTrackTeacher(tmp_path)


def test_teacher_needs_crops_not_cached_features(shared_models, tmp_path):
    with pytest.raises(ValueError, match="--teacher needs the crops"):
        MatchingStage(192, torch.device("cpu"), search_size=239, teacher=shared_models / "nanotrack_v2")


def test_feature_distillation_needs_a_trainable_backbone(shared_models):
    with pytest.raises(ValueError, match="trains conv1-4"):
        MatchingStage(224, torch.device("cpu"), last_layer_only=True, teacher=shared_models / "nanotrack_v2",
                      distill="features")


@pytest.mark.parametrize("level", ["map", "both"])
def test_matching_cli_trains_with_the_teacher(level, shared_models, shared_data, tmp_path):
    """Two steps of `mlt train matching --teacher` on real frames: finite losses, the network exported
    without the feature projection."""
    frames = tmp_path / "seq" / "Bird2"
    sequence = load_sequences(shared_data / "otb" / "Bird2")[0]
    (frames / "img").mkdir(parents=True)
    for n in range(4):
        (frames / "img" / f"{n + 1:04d}.jpg").symlink_to(sequence.frames[n])
    np.savetxt(frames / "groundtruth_rect.txt", sequence.boxes[:4] + [1, 1, 0, 0], fmt="%g", delimiter=",")
    out = tmp_path / "run"
    assert main(["train", "matching", "--source", f"seq:{tmp_path / 'seq'}", "--teacher", str(shared_models / "nanotrack_v2"),
                 "--distill", level,
                 "--iterations", "2", "--batch-size", "2", "--workers", "0", "--threads", "1", "--out", str(out)]) == 0
    losses = [float(line.split(",")[1]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert len(losses) == 2 and np.isfinite(losses).all()
    exported = load_matching(out / "matching.safetensors")
    assert isinstance(exported, MatchingNetwork)
