"""Bad and odd inputs at the edges: images, boxes, sequence folders, weight files, parameter sets, devices.

Everything here is cheap (no network forward): the tracker's behaviour under odd inputs is in
test_reliability.py.
"""
import cv2
import numpy as np
import pytest
import torch

from mlt_plugin.networks.weights_io import build_networks, load_weights, save_weights
from mlt_plugin.params import load_parameters, parameter_set_names, resolve_device
from mlt_plugin.sequences import FrameNotFoundError, load_sequence, load_sequences, read_boxes
from mlt_plugin.tracking.inputs import parse_box, prepare_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


# ---------------------------------------------------------------- images


def test_grey_images_are_expanded_to_three_equal_channels():
    grey = RGB[:, :, 0]
    for image in (grey, grey[:, :, None]):
        out = prepare_image(image)
        assert out.shape == (6, 5, 3) and out.dtype == np.uint8
        assert (out == grey[:, :, None]).all()


def test_rgba_drops_alpha():
    rgba = np.concatenate([RGB, np.full((6, 5, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(prepare_image(rgba), RGB)


def test_uint8_is_taken_as_is_and_contiguous():
    out = prepare_image(RGB)
    assert np.array_equal(out, RGB) and out.flags.c_contiguous


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a[:, ::-1],  # mirrored view
        lambda a: a[..., ::-1],  # BGR <-> RGB slice
        lambda a: a[::2, 1:],  # strided crop
        np.asfortranarray,
        lambda a: np.broadcast_to(a[:1], a.shape),  # read-only, zero stride
    ],
)
def test_non_contiguous_views_are_accepted(view):
    image = view(RGB)
    out = prepare_image(image)
    assert out.flags.c_contiguous and np.array_equal(out, np.ascontiguousarray(image))


def test_uint16_is_scaled_by_1_over_257():
    image = np.array([[0, 257, 65535]], dtype=np.uint16)
    assert prepare_image(image)[0, :, 0].tolist() == [0, 1, 255]
    big_endian = image.astype(">u2")  # e.g. from FITS / some 16-bit PNG readers
    assert prepare_image(big_endian)[0, :, 0].tolist() == [0, 1, 255]


def test_float_rule_0_1_or_0_255_clipped():
    assert prepare_image(np.array([[0.0, 0.5, 1.0]], np.float32))[0, :, 0].tolist() == [0, 128, 255]
    assert prepare_image(np.array([[0.0, 128.0, 300.0, -4.0]]))[0, :, 0].tolist() == [0, 128, 255, 0]
    assert prepare_image(np.array([[0.25]], np.float16))[0, 0, 0] == 64


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_nan_or_inf_is_refused(bad):
    with pytest.raises(ValueError, match="NaN or infinite"):
        prepare_image(np.array([[0.5, bad]]))


def test_bool_is_a_binary_image_0_or_255():
    assert prepare_image(np.array([[False, True]]))[0, :, 0].tolist() == [0, 255]


def test_other_integers_are_0_255_clipped():
    image = np.array([[-3, 0, 200, 1000]], dtype=np.int64)
    assert prepare_image(image)[0, :, 0].tolist() == [0, 0, 200, 255]


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((0, 5, 3), np.uint8), "empty"),
        (np.zeros((5, 0), np.uint8), "empty"),
        (np.zeros((5,), np.uint8), "HxW"),
        (np.zeros((1, 5, 5, 3), np.uint8), "HxW"),
        (np.zeros((5, 5, 2), np.uint8), "HxW"),
        (np.zeros((5, 5, 5), np.uint8), "HxW"),
        (np.uint8(3), "HxW"),
        (np.zeros((5, 5, 3), object), "dtype object"),
        (np.zeros((5, 5, 3), np.complex64), "dtype complex64"),
        (np.full((5, 5), "a"), "dtype <U1"),
        (None, "HxW"),
        ("frame.jpg", "HxW"),
        ([[1, 2], [3]], "numpy"),
    ],
)
def test_bad_images_raise_value_error(image, message):
    with pytest.raises(ValueError, match=message):
        prepare_image(image)


# ---------------------------------------------------------------- boxes


@pytest.mark.parametrize(
    "box, message",
    [
        ([1, 2, np.nan, 4], "nan"),
        ([1, np.inf, 3, 4], "inf"),
        ([1, 2, 0, 4], "w=0.0"),
        ([1, 2, 3, -4], "h=-4.0"),
        ([1, 2, 3], "3 values"),
        ([1, 2, 3, 4, 5], "5 values"),
        (["a", 2, 3, 4], "'a'"),
        (None, "None"),
        ({"bbox": [1, 2, 3, 4]}, "init_bbox"),
    ],
)
def test_bad_boxes_raise_value_error_naming_the_value(box, message):
    with pytest.raises(ValueError, match=message):
        parse_box(box)


def test_box_forms_accepted():
    expected = [1.0, 2.0, 3.0, 4.0]
    for box in ([1, 2, 3, 4], (1, 2, 3, 4), np.array([[1, 2, 3, 4]]), {"init_bbox": [1, 2, 3, 4]}, ["1", "2", "3", "4"]):
        assert parse_box(box).tolist() == expected


# ---------------------------------------------------------------- sequence folders


def _otb_folder(root, frames=4, gt_lines=None, names=None):
    """A tiny OTB-layout sequence: img/0001.jpg ... + groundtruth_rect.txt (1-based)."""
    folder = root / "Tiny"
    (folder / "img").mkdir(parents=True)
    names = names or [f"{i:04d}.jpg" for i in range(1, frames + 1)]
    for name in names:
        cv2.imwrite(str(folder / "img" / name), RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    lines = gt_lines if gt_lines is not None else ["3,3,5,4"] * len(names)
    (folder / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_a_good_folder_loads_and_reads(tmp_path):
    seq = load_sequence(_otb_folder(tmp_path))
    assert len(seq) == 4 and seq.boxes[0].tolist() == [2, 2, 5, 4]
    assert seq.frame(3).shape == (12, 16, 3)


def test_missing_frame_file_names_the_path(tmp_path):
    folder = _otb_folder(tmp_path)
    seq = load_sequence(folder)
    (folder / "img" / "0003.jpg").unlink()  # gone after loading (e.g. a network drive)
    with pytest.raises(FileNotFoundError, match=r"Tiny, frame 2: frame .*0003\.jpg does not exist") as err:
        seq.frame(2)
    assert isinstance(err.value, ValueError) and isinstance(err.value, FrameNotFoundError)


def test_gap_in_frame_numbers_is_found_at_load_time(tmp_path):
    folder = _otb_folder(tmp_path, names=["0001.jpg", "0002.jpg", "0004.jpg"])
    with pytest.raises(ValueError, match=r"0002\.jpg and .*0004\.jpg: frames are missing"):
        load_sequence(folder)


def test_duplicate_frame_numbers_are_found_at_load_time(tmp_path):
    folder = _otb_folder(tmp_path, names=["0001.jpg", "0002.jpg", "0002.png", "0003.jpg"])
    with pytest.raises(ValueError, match="two frames numbered 2"):
        load_sequence(folder)


def test_frames_sampled_every_kth_are_not_gaps(tmp_path):
    seq = load_sequence(_otb_folder(tmp_path, names=["0000.jpg", "0005.jpg", "0010.jpg"]))
    assert len(seq) == 3


def test_unpadded_frame_names_are_in_numeric_order(tmp_path):
    names = [f"{i}.jpg" for i in range(1, 12)]
    seq = load_sequence(_otb_folder(tmp_path, names=names))
    assert [p.name for p in seq.frames] == names


def test_zero_byte_frame(tmp_path):
    folder = _otb_folder(tmp_path)
    (folder / "img" / "0002.jpg").write_bytes(b"")
    seq = load_sequence(folder)
    with pytest.raises(ValueError, match=r"frame 1: frame .*0002\.jpg is an empty \(0-byte\) file"):
        seq.frame(1)


def test_truncated_jpeg(tmp_path):
    folder = _otb_folder(tmp_path)
    path = folder / "img" / "0002.jpg"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # cv2 alone would decode this with grey below the cut
    with pytest.raises(ValueError, match=r"0002\.jpg is a truncated JPEG"):
        load_sequence(folder).frame(1)


def test_undecodable_frame(tmp_path):
    folder = _otb_folder(tmp_path)
    (folder / "img" / "0004.jpg").write_bytes(b"not an image at all" + b"\xff\xd9")
    with pytest.raises(ValueError, match=r"0004\.jpg is not a decodable image"):
        load_sequence(folder).frame(3)


def test_short_ground_truth_names_the_file_and_the_line(tmp_path):
    folder = _otb_folder(tmp_path, gt_lines=["3,3,5,4"] * 3)
    with pytest.raises(ValueError, match=r"groundtruth_rect\.txt has 3 boxes for 4 frames: line 4 .*0004\.jpg"):
        load_sequence(folder)


def test_first_frame_only_ground_truth_is_allowed(tmp_path):
    seq = load_sequence(_otb_folder(tmp_path, gt_lines=["3,3,5,4"]))  # GOT-10k test split style
    assert np.isfinite(seq.boxes[0]).all() and np.isnan(seq.boxes[1:]).all()
    assert seq.visible.tolist() == [True, False, False, False]


def test_blank_line_inside_ground_truth(tmp_path):
    folder = _otb_folder(tmp_path, gt_lines=["3,3,5,4", "", "3,3,5,4", "3,3,5,4", "3,3,5,4"])
    with pytest.raises(ValueError, match=r"groundtruth_rect\.txt, line 2: blank line"):
        load_sequence(folder)


def test_unparsable_ground_truth_line(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,2,3,4\n1,2,x,4\n\n\n")  # trailing blank lines are fine
    with pytest.raises(ValueError, match=r"gt\.txt, line 2: cannot parse"):
        read_boxes(path, one_based=False)


def test_uav123_range_with_a_missing_last_frame(tmp_path):
    import json

    folder = tmp_path / "data_seq" / "UAV123_10fps" / "car9"
    folder.mkdir(parents=True)
    for i in range(3, 7):  # frames 3-6 of the folder; the sequence's range is 3-7
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (tmp_path / "anno" / "UAV123_10fps").mkdir(parents=True)
    (tmp_path / "anno" / "UAV123_10fps" / "car9_1.txt").write_text("1,1,3,3\n" * 5)
    meta = {"UAV123_10fps": {"car9_1": {"folder_name": "car9", "start_frame": 3, "end_frame": 7}}}
    (tmp_path / "UAV123_10fps.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"car9_1: .*car9 has 4 frames numbered 3-7, expected 5"):
        load_sequences(tmp_path)


def test_shared_sequences_load_and_read(shared_data):
    sequences = load_sequences(shared_data / "otb")
    assert sequences
    for seq in sequences[:3]:
        assert seq.frame(len(seq) - 1).ndim == 3


# ---------------------------------------------------------------- weights, parameter sets, devices


@pytest.fixture(scope="module")
def mlt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "mlt.safetensors"
    save_weights(path, *build_networks("mlt"))
    return path


def test_weights_wrong_variant_names_file_and_tensor(mlt_file):
    with pytest.raises(ValueError, match=rf"{mlt_file}: tensor matching\.conv5\.weight has shape \(192, 256, 1, 1\)"):
        load_weights("mt", mlt_file)


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 7, b"garbage" * 100, (100).to_bytes(8, "little") + b'{"a": 1' + b" " * 93],
    ids=["empty", "short", "garbage", "bad-header"],
)
def test_corrupt_weights_file(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"weights file {path} is not a readable safetensors file"):
        load_weights("mt", path)


def test_truncated_weights_file(tmp_path, mlt_file):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(mlt_file.read_bytes()[:100_000])
    with pytest.raises(ValueError, match=rf"{path} is not a readable safetensors file"):
        load_weights("mlt", path)


def test_missing_weights_file_or_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors does not exist"):
        load_weights("mlt", tmp_path / "nope.safetensors")
    with pytest.raises(FileNotFoundError, match="is a directory"):
        load_weights("mlt", tmp_path)


def test_nan_weights_are_refused(tmp_path):
    matching, meta = build_networks("mlt")
    with torch.no_grad():
        matching.conv5.weight[0, 0] = float("nan")
    path = tmp_path / "diverged.safetensors"
    save_weights(path, matching, meta)
    with pytest.raises(ValueError, match=r"matching\.conv5\.weight has NaN or infinite values"):
        load_weights("mlt", path)


def test_tracker_reports_bad_weights_clearly(tmp_path):
    from mlt_plugin.tracking.tracker import MLT

    params = load_parameters("mt")
    params.device = "cpu"
    params.weights = tmp_path / "missing.safetensors"
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        MLT(params)


def test_unknown_parameter_set():
    from mlt_plugin.tracking.tracker import MLT

    with pytest.raises(ValueError, match=r"unknown parameter set 'nope'; choose one of .*default"):
        load_parameters("nope")
    with pytest.raises(ValueError, match="unknown parameter set 'nope'"):
        MLT("nope")
    assert {"default", "mt", "mt_ft"} <= set(parameter_set_names())


@pytest.mark.parametrize("name", ["tpu", "gpu0", "GPU", "cuda:x", "", "mps", "meta", 3.5])
def test_unknown_devices(name):
    with pytest.raises(ValueError, match=f"device {name!r}"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", 0])
def test_cuda_without_cuda(name):
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device(name)


def test_cuda_index_past_the_devices(monkeypatch):
    # Pretend to have one GPU, so the index check itself is what fails (not "CUDA is not available").
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="'cuda:99' asked for, but this machine has 1 CUDA device"):
        resolve_device("cuda:99")


def test_tracker_reports_unknown_device():
    from mlt_plugin.tracking.tracker import MLT

    params = load_parameters("mt")
    params.device = "tpu"
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        MLT(params)


def test_davis_layout_boxes_from_masks(tmp_path):
    """DAVIS 2016: frames in JPEGImages/480p/<seq>, masks in Annotations/480p/<seq>; box = mask extent."""
    root = tmp_path / "DAVIS"
    frames, masks = root / "JPEGImages" / "480p" / "cat", root / "Annotations" / "480p" / "cat"
    frames.mkdir(parents=True)
    masks.mkdir(parents=True)
    for k in range(3):
        cv2.imwrite(str(frames / f"{k:05d}.jpg"), RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        mask = np.zeros((24, 32), np.uint8)
        if k < 2:
            mask[5 + k : 11, 3:20] = 255  # rows 5+k..10, columns 3..19
        cv2.imwrite(str(masks / f"{k:05d}.png"), mask)
    (sequence,) = load_sequences(root)
    assert sequence.name == "cat" and len(sequence) == 3
    assert sequence.boxes[0].tolist() == [3, 5, 17, 6] and sequence.boxes[1].tolist() == [3, 6, 17, 5]
    assert sequence.visible.tolist() == [True, True, False]  # an empty mask: the target is absent
    assert load_sequence(frames).boxes[1].tolist() == [3, 6, 17, 5]
    (masks / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match="00002.png"):
        load_sequences(root)
