"""The tracker under odd inputs and long runs: it keeps tracking or raises ValueError, never crashes.

Untrained weights (no file is shipped in the repo) and tiny images keep this cheap; what is checked
is the input/state handling, not accuracy: every call returns a finite box with w, h > 0 and a
presence score in [0, 1], or raises ValueError for a bad input.
"""
import resource
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlt_plugin.networks.weights_io import build_networks, save_weights
from mlt_plugin import build_tracker
from mlt_plugin.tracking.crops import context_size

SETTINGS = dict(deadline=None, database=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The test machine is shared with training runs: one thread each.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tracker(name="mt", **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained weights: fine for input handling
        return build_tracker(name, device="cpu", **overrides)


@pytest.fixture(scope="module")
def tracker():
    return make_tracker()


@pytest.fixture(scope="module")
def scale_search_tracker():
    """The paper's 3-scale search, whose scale choice (``_locate``) the tests below force."""
    return make_tracker("mt@box_estimator=scale_search")


def noise(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def assert_sane(out, tracker=None):
    box = np.asarray(out["target_bbox"], dtype=np.float64)
    assert box.shape == (4,) and np.isfinite(box).all(), out
    assert box[2] > 0 and box[3] > 0, out
    score = out["object_presence_score"]
    assert np.isfinite(score) and 0.0 <= score <= 1.0, out
    if tracker is not None:  # the state rule of MLT._clamp_state
        height, width = tracker.image_size
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        assert -1e-6 <= cx <= width + 1e-6 and -1e-6 <= cy <= height + 1e-6, (out, tracker.image_size)
        assert tracker.params.min_size - 1e-9 <= box[2] <= 10 * width + 1e-6, out
        assert tracker.params.min_size - 1e-9 <= box[3] <= 10 * height + 1e-6, out


def assert_search_region_follows_size(tracker):
    p = tracker.params
    expected = context_size(*tracker.size, p.context_amount) * p.instance_size / p.exemplar_size
    assert tracker.search_side == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- boxes


@pytest.mark.parametrize(
    "box",
    [
        [30, 20, 20, 16],  # partly outside, bottom right
        [-8, -6, 12, 10],  # partly outside, top left
        [-100, -100, 10, 10],  # wholly outside, top left
        [500, 10, 10, 10],  # wholly outside, right
        [10, 10, 1, 1],  # 1 px target
        [0, 0, 2, 1],  # 2 px target at the corner
        [5, 5, 0.01, 0.01],  # sub-pixel target
        [-20, -20, 80, 70],  # larger than the frame
        [-5, -5, 1e6, 1e6],  # far larger than the frame
        [1e300, 1e300, 1e308, 1.7e308],  # absurd but finite: x + w / 2 overflows
    ],
)
def test_odd_boxes_are_tracked_with_a_clamped_state(tracker, box):
    image = noise(32, 40)
    tracker.initialize(image, box)
    for seed in (1, 2):
        assert_sane(tracker.track(noise(32, 40, seed)), tracker)
        assert_search_region_follows_size(tracker)


@pytest.mark.parametrize(
    "box, best, size",
    [([10, 10, 1, 1], 0, [2.0, 2.0]), ([-5, -5, 1e6, 1e6], 2, [400.0, 320.0])],
    ids=["shrinking-at-min-size", "growing-at-10x-frame"],
)
def test_search_region_does_not_drift_from_a_clamped_size(scale_search_tracker, monkeypatch, box, best, size):
    tracker = scale_search_tracker
    tracker.initialize(noise(32, 40), box)
    middle = tracker.params.response_upsample * 17 // 2
    # Force the smallest / largest scale at every frame, peak in the middle: the size stays clamped.
    monkeypatch.setattr(tracker.box_estimator, "_locate", lambda logits: (best, (middle, middle), 0.9))
    for seed in range(4):
        assert_sane(tracker.track(noise(32, 40, seed)), tracker)
    assert tracker.size.tolist() == size  # params.min_size, 10x the frame
    assert_search_region_follows_size(tracker)  # not shrunk / grown further by the scale steps


def test_valid_box_is_kept_as_given(tracker):
    tracker.initialize(noise(32, 40), [10.5, 8.25, 12, 9])
    assert tracker.center.tolist() == [16.5, 12.75] and tracker.size.tolist() == [12, 9]


def test_target_leaving_the_frame_gives_a_low_presence_score(scale_search_tracker, monkeypatch):
    """The peak found beyond the frame's edge (where the crop is padding) is no visible target."""
    tracker = scale_search_tracker
    tracker.initialize(noise(32, 40), [28, 12, 10, 8])  # near the right edge
    first = tracker.track(noise(32, 40))
    assert_sane(first, tracker)
    # A trained network following the target out of view puts the peak outside the frame: simulate
    # that peak (bottom-right of the response, probability 0.9) without trained weights.
    corner = tracker.params.response_upsample * 17 - 1
    monkeypatch.setattr(tracker.box_estimator, "_locate", lambda logits: (1, (corner // 2, corner), 0.9))
    for seed in range(3):
        out = tracker.track(noise(32, 40, seed))
        assert_sane(out, tracker)
        assert out["object_presence_score"] < 0.5  # 0.9 times the small share of the box inside the frame
    assert tracker.center[0] == 40  # stays alive at the frame's edge


def test_target_leaving_the_frame_keeps_the_tracker_alive(tracker):
    """A bright square drifts out of a textured frame and stays out: the tracker keeps answering."""
    background = noise(48, 64)

    def frame(x):
        image = background.copy()
        image[20:32, max(x, 0) : max(x + 12, 0)] = 255
        return image

    tracker.initialize(frame(44), [44, 20, 12, 12])
    for x in (50, 56, 62, 68, 80):
        assert_sane(tracker.track(frame(x)), tracker)


def test_frame_size_change_keeps_the_state_inside(tracker):
    tracker.initialize(noise(48, 64), [40, 30, 20, 14])
    assert_sane(tracker.track(noise(24, 20)), tracker)  # smaller: centre was outside the new frame
    assert tracker.image_size == (24, 20)
    assert_sane(tracker.track(noise(6, 5)), tracker)  # tiny frame: size clamped to 10x it
    assert_search_region_follows_size(tracker)
    assert_sane(tracker.track(noise(60, 90)), tracker)  # and bigger again
    assert_sane(tracker.track(noise(60, 90)[:, :, 0]), tracker)  # grey mid-sequence


# ---------------------------------------------------------------- images


def test_image_forms_give_the_same_track_as_uint8_rgb(tracker):
    base = noise(24, 32)
    forms = {
        "mirrored view": base[:, ::-1][:, ::-1],
        "bgr slice twice": base[..., ::-1][..., ::-1],
        "fortran": np.asfortranarray(base),
        "rgba": np.concatenate([base, np.zeros((24, 32, 1), np.uint8)], axis=2),
        "uint16": base.astype(np.uint16) * 257,
        "float 0-1": base / 255.0,
        "float 0-255": base.astype(np.float32),
    }
    tracker.initialize(base, [8, 6, 10, 8])
    reference = tracker.track(base)
    for name, image in forms.items():
        tracker.initialize(image, [8, 6, 10, 8])
        assert tracker.track(image) == reference, name


def test_grey_and_bool_images_are_tracked(tracker):
    grey = noise(24, 32)[:, :, 0]
    for image in (grey, grey[:, :, None], grey > 128, grey[:, ::-1]):
        tracker.initialize(image, [8, 6, 10, 8])
        assert_sane(tracker.track(image), tracker)


@pytest.mark.parametrize(
    "image",
    [np.zeros((0, 8, 3), np.uint8), np.zeros((8, 8, 2), np.uint8), np.zeros((8, 8, 3), object), np.full((8, 8), np.nan)],
)
def test_bad_image_in_track_raises_and_keeps_the_state(tracker, image):
    tracker.initialize(noise(24, 32), [8, 6, 10, 8])
    state = tracker.center.copy(), tracker.size.copy(), tracker.frame_index
    with pytest.raises(ValueError):
        tracker.track(image)
    assert np.array_equal(tracker.center, state[0]) and np.array_equal(tracker.size, state[1])
    assert tracker.frame_index == state[2]  # a refused frame is no frame
    assert_sane(tracker.track(noise(24, 32)), tracker)


def test_track_before_initialize():
    with pytest.raises(ValueError, match="before initialize"):
        make_tracker().track(noise(8, 8))


# ---------------------------------------------------------------- long runs, determinism


def _cheap_backbone(tracker):
    """Swap conv1-conv4 for average pooling + a fixed 1x1 projection: 300 frames take seconds, and
    everything the tracker keeps across frames (memory, template, updates) is still the real code."""
    projection = torch.randn(256, 3, 1, 1, generator=torch.Generator().manual_seed(0))

    def conv4_features(images):
        side = (images.shape[-1] - 127) // 8 + 8  # 127 -> 8x8, 255 -> 24x24, as the real backbone
        pooled = F.adaptive_avg_pool2d(images.float() / 255.0, side)
        return F.relu(F.conv2d(pooled, projection)).to(images.dtype)

    tracker.net.conv4_features = conv4_features


def _footprint(tracker):
    """Length or element count of everything the tracker holds: none of it may grow per frame."""
    sizes = {}
    for name, value in vars(tracker).items():
        if isinstance(value, (torch.Tensor, np.ndarray)):
            sizes[name] = value.numel() if isinstance(value, torch.Tensor) else value.size
        elif hasattr(value, "__len__") and not isinstance(value, str):
            sizes[name] = len(value)
    return sizes


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak RSS, KiB on Linux


@pytest.mark.parametrize(
    "name, overrides",
    [("paper", {}), ("paper_mt_ft", {"finetune_iterations": 2}), ("paper_mt", {})],  # the cheap backbone is paper-shaped
    ids=["meta", "finetune", "none"],
)
def test_long_run_keeps_memory_flat(name, overrides):
    tracker = make_tracker(name, memory_size=4, update_interval=5, num_update_samples=2, **overrides)
    _cheap_backbone(tracker)
    base = noise(24, 32)
    tracker.initialize(base, [10, 8, 8, 6])
    updates = 0
    original_update = tracker.update

    def counted_update():
        nonlocal updates
        updates += 1
        original_update()

    tracker.update = counted_update
    frames = [np.roll(base, shift, axis=1) for shift in range(-3, 4)]
    for t in range(300):
        assert_sane(tracker.track(frames[t % len(frames)]), tracker)
        assert len(tracker.memory) <= 4
        if t == 49:
            footprint, rss = _footprint(tracker), _rss_mib()
    assert updates == 301 // 5  # frame t = 2..301, update at every multiple of 5
    assert _footprint(tracker) == footprint
    assert _rss_mib() - rss < 64  # loose: a per-frame leak of the 17x17 maps or crops would exceed it


def test_same_frames_same_boxes(tmp_path):
    """Two trackers, same weights and frames -> identical boxes, also through meta updates (CPU)."""
    weights = tmp_path / "mlt.safetensors"
    save_weights(weights, *build_networks("mlt"))  # untrained networks are random: share one set
    frames = [np.roll(noise(32, 40), 2 * t, axis=1) for t in range(5)]
    runs = []
    for _ in range(2):
        tracker = make_tracker("paper", update_interval=2, weights=weights)
        tracker.initialize(frames[0], [12, 10, 10, 8])
        runs.append([tracker.track(frame) for frame in frames[1:]])
        assert tracker.w_target is not None  # the meta update ran
    assert runs[0] == runs[1]


# ---------------------------------------------------------------- properties


coordinate = st.one_of(
    st.floats(-200, 200),
    st.sampled_from([0.0, -1e9, 1e9, 1e300, np.nan, np.inf, -np.inf]),
)
extent = st.one_of(
    st.floats(-5, 300),
    st.sampled_from([0.0, 1e-6, 0.5, 1.0, 2.0, 1e9, 1e300, np.nan, np.inf]),
)
boxes = st.tuples(coordinate, coordinate, extent, extent)
finite_coordinate = st.one_of(st.floats(-200, 200), st.sampled_from([-1e9, 1e9, 1e300]))
positive_extent = st.one_of(st.floats(1e-3, 300), st.sampled_from([1e-6, 0.5, 1.0, 2.0, 1e9, 1e300]))
valid_boxes = st.tuples(finite_coordinate, finite_coordinate, positive_extent, positive_extent)


def box_is_valid(box):
    return bool(np.isfinite(box).all() and box[2] > 0 and box[3] > 0)


@st.composite
def images(draw, valid_only=False):
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    shape = draw(
        st.sampled_from(
            [(height, width, 3), (height, width), (height, width, 1), (height, width, 4)]
            + ([] if valid_only else [(height, width, 2), (0, width, 3), (height,), (1, height, width, 3)])
        )
    )
    dtype = draw(
        st.sampled_from(
            ["uint8", "uint16", "int16", "int64", "float16", "float32", "float64", "bool"]
            + ([] if valid_only else ["complex64", "object"])
        )
    )
    image = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, shape)
    image = image.astype(dtype)
    if dtype.startswith("float") and image.size and not valid_only and draw(st.booleans()):
        image.flat[0] = np.nan
    if draw(st.booleans()) and image.ndim >= 2:
        image = image[:, ::-1]  # a non-contiguous view
    return image


def image_is_valid(image):
    ok_shape = (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))) and min(image.shape[:2]) > 0
    ok_dtype = image.dtype.kind in "biuf"
    return ok_shape and ok_dtype and not (image.dtype.kind == "f" and np.isnan(image).any())


@settings(max_examples=25, **SETTINGS)
@given(box=boxes, first=images(valid_only=True), second=images(valid_only=True))
def test_property_random_boxes(tracker, box, first, second):
    event(f"valid box: {box_is_valid(box)}")
    if not box_is_valid(box):
        with pytest.raises(ValueError):
            tracker.initialize(first, list(box))
        return
    tracker.initialize(first, list(box))
    assert_sane(tracker.track(second), tracker)
    assert_sane(tracker.track(first), tracker)


@settings(max_examples=25, **SETTINGS)
@given(first=images(), second=images(), box=st.tuples(st.floats(-10, 40), st.floats(-10, 40), st.floats(0.5, 60), st.floats(0.5, 60)))
def test_property_random_images(tracker, first, second, box):
    event(f"valid images: {image_is_valid(first)}, {image_is_valid(second)}")
    if not image_is_valid(first):
        with pytest.raises(ValueError):
            tracker.initialize(first, list(box))
        return
    tracker.initialize(first, list(box))
    if not image_is_valid(second):
        with pytest.raises(ValueError):
            tracker.track(second)
        return
    assert_sane(tracker.track(second), tracker)


@pytest.fixture(scope="module")
def meta_tracker():
    return make_tracker("default", update_interval=2, memory_size=3)


@settings(max_examples=4, **SETTINGS)
@given(box=valid_boxes, frames=st.lists(images(valid_only=True), min_size=3, max_size=3))
def test_property_meta_update_under_odd_inputs(meta_tracker, box, frames):
    meta_tracker.initialize(frames[0], list(box))
    for frame in frames:  # frame t = 2, 3, 4: meta updates at t = 2 and 4
        assert_sane(meta_tracker.track(frame), meta_tracker)
    assert meta_tracker.frame_index == 4
