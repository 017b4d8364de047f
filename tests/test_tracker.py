"""Algorithm 1: memory, entropy selection, update period, parameter sets and the pytracking contract."""
import warnings

import numpy as np
import pytest
import torch

from mlt_plugin import MLT, load_parameters
from mlt_plugin.demo import demo_sequence
from mlt_plugin.networks import weights_io
from mlt_plugin.networks.extractors import PaperExtractor
from mlt_plugin.sequences import load_sequence
from mlt_plugin.tracking.memory import ContextMemory, ContextPatch, response_entropy


@pytest.fixture(scope="module")
def demo():
    return demo_sequence(num_frames=24)


def _patch(response):
    return ContextPatch(torch.zeros(1), response, torch.zeros(2))


def test_entropy_selection_picks_the_lowest_entropy_maps():
    rng = torch.Generator().manual_seed(0)
    peaked = [torch.full((17, 17), 0.01) for _ in range(3)]
    for k, m in enumerate(peaked):
        m[8, 8 + k] = 1.0 + k  # sharper and sharper peaks
    flat = [torch.rand(17, 17, generator=rng) * 0.1 + 0.5 for _ in range(5)]
    memory = ContextMemory(capacity=20)
    for m in flat[:2] + peaked + flat[2:]:
        memory.add(_patch(m))
    chosen = memory.select_min_entropy(3)
    assert [c.response for c in chosen] == [peaked[2], peaked[1], peaked[0]]
    assert len({id(c) for c in memory.select_min_entropy(8)}) == 8  # without replacement
    uniform = torch.ones(17, 17)
    assert response_entropy(uniform) == pytest.approx(np.log(289), rel=1e-5)


def test_memory_is_bounded_and_keeps_the_most_recent():
    memory = ContextMemory(capacity=3)
    maps = [torch.full((17, 17), float(k)) for k in range(1, 6)]
    for m in maps:
        memory.add(_patch(m))
    assert len(memory) == 3 and [p.response for p in memory.patches] == maps[2:]


def _tracker(name="paper", **overrides):  # the paper family: its tests check the paper's numbers
    params = load_parameters(name)
    params.device = "cpu"
    for key, value in overrides.items():
        setattr(params, key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLT(params)


@pytest.mark.parametrize("tau, expected", [(1.01, 0), (-0.01, 11)])
def test_memory_threshold(demo, tau, expected):
    tracker = _tracker(confidence_threshold=tau, update_interval=1000)
    tracker.initialize(demo.frame(0), demo.boxes[0])
    scores = [tracker.track(demo.frame(i))["object_presence_score"] for i in range(1, 12)]
    assert len(tracker.memory) == expected
    assert all(0 <= s <= 1 for s in scores)


def test_memory_stores_only_confident_patches(demo):
    tracker = _tracker(update_interval=1000)
    tracker.initialize(demo.frame(0), demo.boxes[0])
    tau = tracker.params.confidence_threshold
    gates = []
    for i in range(1, 12):
        tracker.track(demo.frame(i))
        gates.append(tracker.last_gate)
    assert len(tracker.memory) == sum(g > tau for g in gates)
    assert [q.frame for q in tracker.memory.patches] == [i for i, g in zip(range(1, 12), gates) if g > tau]


def test_meta_update_every_T_frames(demo, monkeypatch):
    tracker = _tracker(update_interval=5, confidence_threshold=-1)
    calls = []
    original = tracker.meta_learner.forward
    monkeypatch.setattr(tracker.meta_learner, "forward", lambda d: calls.append(tracker.frame_index) or original(d))
    tracker.initialize(demo.frame(0), demo.boxes[0])
    assert tracker.matcher.template.shape[1] == 192  # eq. (1) before any update
    for i in range(1, 16):
        tracker.track(demo.frame(i))
    assert calls == [5, 10, 15]
    assert tracker.matcher.template.shape[1] == 224 and tracker.w_target.shape == (1, 32, 256)


def test_template_features_are_kept_not_recomputed(demo, monkeypatch):
    tracker = _tracker(update_interval=3, confidence_threshold=-1)
    tracker.initialize(demo.frame(0), demo.boxes[0])
    crops = []
    original = tracker._search_conv4
    monkeypatch.setattr(tracker, "_search_conv4", lambda x: crops.append(x.shape[0]) or original(x))
    for i in range(1, 7):
        tracker.track(demo.frame(i))
    assert crops == [3] * 6  # one batched 3-scale forward per frame; meta updates add none


def test_baselines_are_parameter_sets():
    mt, ft, default = load_parameters("paper_mt"), load_parameters("paper_mt_ft"), load_parameters("paper")
    assert (default.update, mt.update, ft.update) == ("meta", "none", "finetune")
    assert (ft.update_interval, ft.finetune_iterations, ft.finetune_lr) == (50, 30, 1e-3)
    assert default.scales == pytest.approx((1 / 1.035, 1, 1.035))
    assert (default.scale_penalty, default.scale_damping, default.window_influence) == (0.97, 0.59, 0.25)
    assert (default.update_interval, default.confidence_threshold, default.num_update_samples) == (10, 0.5, 8)
    assert default.has("device") and default.get("nothing", 3) == 3
    assert _tracker("paper_mt").net.conv5.out_channels == 224


def test_finetune_baseline_changes_only_w5(demo):
    tracker = _tracker("paper_mt_ft", update_interval=4, confidence_threshold=-1, finetune_iterations=3)
    before = {k: v.clone() for k, v in tracker.net.state_dict().items()}
    tracker.initialize(demo.frame(0), demo.boxes[0])
    for i in range(1, 5):
        tracker.track(demo.frame(i))
    changed = {k for k, v in tracker.net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"conv5.weight"}
    tracker.initialize(demo.frame(0), demo.boxes[0])  # a new sequence starts from the trained w5
    assert torch.equal(tracker.net.conv5.weight, before["conv5.weight"])


def test_pytracking_contract():
    """pytracking's BaseTracker contract, exactly: what its runner reads from each returned dict."""
    # 40 frames: the target moves ~5 response cells a frame. In the 24-frame demo it moves 8 (its own size):
    # the box head's cosine window (weight 0.4, zero at the map's edge) then keeps it near the last state.
    demo = demo_sequence(num_frames=40)
    tracker = _tracker("mt")
    tracker.initialize_features()
    assert tracker.multiobj_mode == "parallel"
    out = tracker.initialize(demo.frame(0), {"init_bbox": list(demo.boxes[0])})
    assert set(out) == {"time"} and isinstance(out["time"], float) and out["time"] >= 0
    previous = out
    for index in (1, 2):
        result = tracker.track(demo.frame(index), info={"previous_output": previous})
        assert set(result) == {"target_bbox", "object_presence_score"}
        box = result["target_bbox"]
        assert isinstance(box, list) and len(box) == 4 and all(type(v) is float for v in box)
        assert np.isfinite(box).all() and box[2] > 0 and box[3] > 0
        assert type(result["object_presence_score"]) is float and 0.0 <= result["object_presence_score"] <= 1.0
        previous = result
    assert _iou(box, demo.boxes[2]) > 0.3  # the answer is about the target, not any box


def _iou(a, b):
    from mlt_plugin.metrics import iou

    return float(iou(np.asarray(a), np.asarray(b)))


def test_shipped_weights_track_a_real_sequence(shared_data):
    """The shipped default weights on MountainBike6's first 50 frames (a fast DTB70 target): success AUC
    0.683 measured (untrained weights: 0.072-0.088 over three seeds, same frames). The floor sits between
    them. Slow starts (Dog1, Jogging, Bird2) do not tell trained from untrained weights: untrained score
    as high there."""
    from mlt_plugin import build_tracker
    from mlt_plugin.evaluation.running import run_sequence
    from mlt_plugin.evaluation.scoring import score

    sequence = load_sequence(shared_data / "dtb70" / "MountainBike6")
    with warnings.catch_warnings():
        warnings.simplefilter("error", weights_io.UntrainedWeightsWarning)  # these must be the trained weights
        tracker = build_tracker("default", device="cpu")
    boxes, _, _ = run_sequence(tracker, sequence, max_frames=50)
    assert score(boxes, sequence)["success_score"] > 0.4


def test_box_size_follows_the_target_scale():
    """The demo target grows and shrinks by 30 %: the tracked width follows it (correlation 0.55 measured
    with the shipped weights). With the scale penalty on probabilities the width never changed at all:
    a saturated unit-scale peak could not be beaten by another scale (issue 11)."""
    from mlt_plugin import build_tracker
    from mlt_plugin.evaluation.running import run_sequence

    sequence = demo_sequence(num_frames=80)
    boxes, _, _ = run_sequence(build_tracker("default", device="cpu"), sequence)
    assert np.corrcoef(np.asarray(boxes)[:, 2], sequence.boxes[:, 2])[0, 1] > 0.35


def test_untrained_weights_are_announced(tmp_path, monkeypatch):
    monkeypatch.setitem(PaperExtractor.default_files, "mlt", tmp_path / "absent.safetensors")
    with pytest.warns(weights_io.UntrainedWeightsWarning, match="UNTRAINED"):
        MLT(load_parameters("paper"))


def test_weights_round_trip_and_errors(tmp_path):
    matching, meta = weights_io.build_networks("mlt")
    path = tmp_path / "w.safetensors"
    weights_io.save_weights(path, matching, meta)
    loaded, loaded_meta = weights_io.load_weights("mlt", path)
    assert torch.allclose(loaded.conv5.weight, matching.conv5.weight.half().float())
    # The meta-learner's large layers are stored as int8 rows: error at most half a step of 1/127 row max.
    for name, value in meta.state_dict().items():
        restored = loaded_meta.state_dict()[name]
        if value.dim() == 2 and value.numel() >= weights_io.INT8_MIN_VALUES:
            step = value.abs().amax(1, keepdim=True) / 127
            assert ((restored - value).abs() <= step / 2 + 1e-7).all() and not torch.equal(restored, value)
        elif value.is_floating_point():
            assert torch.allclose(restored, value.half().float())
    from safetensors.torch import load_file, save_file

    damaged = tmp_path / "damaged.safetensors"
    save_file({k: v for k, v in load_file(str(path)).items() if not k.endswith(weights_io.SCALE_SUFFIX)}, str(damaged))
    with pytest.raises(ValueError, match="damaged.safetensors.*row_scale"):
        weights_io.load_weights("mlt", damaged)
    with pytest.raises(ValueError, match="w.safetensors.*shape"):
        weights_io.load_weights("mt", path)  # 224-channel network from a 192-channel file
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        weights_io.load_weights("mlt", corrupt)
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        weights_io.load_weights("mlt", tmp_path / "nope.safetensors")


def test_int8_is_calibrated_once_per_tracker(demo, tmp_path, monkeypatch):
    """Shipped weights bring their ranges; a file without a calibration file is calibrated on the first
    sequence only, and every later initialize (VOT's re-initialisations) reuses the same int8 network."""
    from mlt_plugin.networks.int8 import int8_supported

    if not int8_supported():
        pytest.skip("int8 needs OpenVINO on an x86 CPU")
    calls = []
    original = PaperExtractor.int8_activation_maxima
    monkeypatch.setattr(PaperExtractor, "int8_activation_maxima", lambda *a: calls.append(1) or original(*a))
    params = load_parameters("paper_mt")
    params.precision = "int8"
    shipped = MLT(params)
    shipped.initialize(demo.frame(0), demo.boxes[0])
    assert calls == [] and shipped.search_engine is not None

    path = tmp_path / "copy.safetensors"
    path.write_bytes(weights_io.default_file("paper", "mt").read_bytes())  # the same weights, no calibration file
    params = load_parameters("paper_mt")
    params.precision, params.weights = "int8", str(path)
    tracker = MLT(params)
    tracker.initialize(demo.frame(0), demo.boxes[0])
    backbone = tracker.search_engine
    tracker.track(demo.frame(1))
    tracker.initialize(demo.frame(5), demo.boxes[5])
    assert calls == [1] and tracker.search_engine is backbone


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_precisions_track_a_real_sequence_alike(shared_data, precision):
    """Reduced precisions follow the target on 30 frames of Bird2 as fp32 does (IoU with fp32's boxes)."""
    from mlt_plugin.metrics import iou
    from mlt_plugin.networks.int8 import int8_supported
    from mlt_plugin.params import cpu_has_bf16

    if precision == "int8" and not int8_supported():
        pytest.skip("int8 needs OpenVINO on an x86 CPU")
    if precision == "bf16" and not cpu_has_bf16():
        pytest.skip("this CPU has no native bf16 (emulated bf16 is too slow for a test)")
    sequence = load_sequence(shared_data / "otb" / "Bird2")
    boxes = {}
    for name in ("fp32", precision):
        params = load_parameters("paper_mt")
        params.precision = name
        tracker = MLT(params)
        tracker.initialize(sequence.frame(0), sequence.boxes[0])
        boxes[name] = np.array([tracker.track(sequence.frame(i))["target_bbox"] for i in range(1, 31)])
    assert iou(boxes[precision], boxes["fp32"]).min() > 0.8
    assert iou(boxes[precision], sequence.boxes[1:31]).mean() > 0.5


def test_tracks_50_frames_of_a_real_sequence(shared_data):
    sequence = load_sequence(shared_data / "otb" / "Dog")
    tracker = _tracker()
    tracker.initialize(sequence.frame(0), sequence.boxes[0])
    boxes = np.array([tracker.track(sequence.frame(i))["target_bbox"] for i in range(1, 51)])
    assert boxes.shape == (50, 4) and np.isfinite(boxes).all() and (boxes[:, 2:] > 0).all()
    assert tracker.frame_index == 51


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run tools/gpu_check.py on a GPU machine)")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_tracks_as_the_cpu_does(demo, precision):
    """The CUDA path, meta update included (every 10 frames), follows the CPU fp32 boxes."""
    from mlt_plugin.metrics import iou

    boxes = {}
    for device, name in (("cpu", "fp32"), ("cuda", precision)):
        params = load_parameters("default")
        params.device, params.precision, params.update_interval = device, name, 10
        tracker = MLT(params)
        tracker.initialize(demo.frame(0), demo.boxes[0])
        boxes[device] = np.array([tracker.track(demo.frame(i))["target_bbox"] for i in range(1, 24)])
    assert iou(boxes["cuda"], boxes["cpu"]).min() > 0.8
