"""The readers of the larger training data (issue 21): Tiny ImageNet-200 and DAVIS 2016, native layouts."""
import cv2
import numpy as np
import pytest

from mlt_plugin.training.datasets import load_source, parse_source_spec
from mlt_plugin.training.datasets.sources import KINDS
from mlt_plugin.training.datasets.tinyimagenet import load_tiny_imagenet
from mlt_plugin.training.split import TRAIN_LARGE

RNG = np.random.default_rng(0)


def _jpeg(path, shape=(64, 64, 3)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), RNG.integers(0, 256, shape, dtype=np.uint8))


def _tiny_imagenet(root):
    """tiny-imagenet-200: two classes of two train images, a class folder without boxes, three val images."""
    boxes = {"n001": ["0\t0\t63\t63", "10\t20\t40\t50"], "n002": ["5\t6\t30\t40", "0\t0\t9\t9"]}  # 10x10: too small
    for wnid, rows in boxes.items():
        lines = []
        for k, corners in enumerate(rows):
            _jpeg(root / "train" / wnid / "images" / f"{wnid}_{k}.JPEG")
            lines.append(f"{wnid}_{k}.JPEG\t{corners}")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(lines) + "\n")
    _jpeg(root / "train" / "n003" / "images" / "n003_0.JPEG")  # as two classes of the real copy: no boxes file
    for k in range(3):
        _jpeg(root / "val" / "images" / f"val_{k}.JPEG")
    # No newline after the last line, as in the real val_annotations.txt.
    (root / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn002\t1\t2\t50\t60\nval_1.JPEG\tn001\t0\t0\t63\t63\nval_2.JPEG\tn003\t8\t8\t39\t39")
    (root / "wnids.txt").write_text("n001\nn002\nn003\n")


def test_tiny_imagenet_boxes_and_labels(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    _tiny_imagenet(root)
    train = load_source("tinyimagenet", str(root)).trajectories
    assert [(t.name, t.label, t.boxes[0].tolist()) for t in train] == [
        ("n001/n001_0.JPEG", "n001", [0, 0, 64, 64]),  # inclusive corners: 0..63 is 64 px
        ("n001/n001_1.JPEG", "n001", [10, 20, 31, 31]),
        ("n002/n002_0.JPEG", "n002", [5, 6, 26, 35]),
    ]
    assert all(len(t) == 1 and t.visible.tolist() == [True] for t in train)
    assert train[1].frame(0).shape == (64, 64, 3)
    assert [t.name for t in load_source("tinyimagenet", str(root / "train")).trajectories] == [t.name for t in train]
    assert len(load_tiny_imagenet(root, min_size=0)) == 4  # the 10x10 box is only dropped by min_size

    val = load_source(*parse_source_spec(f"tinyimagenet:{root}/val:2")[:2]).trajectories
    assert [(t.label, t.boxes[0].tolist()) for t in val] == [("n002", [1, 2, 50, 59]), ("n001", [0, 0, 64, 64]),
                                                             ("n003", [8, 8, 32, 32])]
    assert "tinyimagenet" in KINDS


def test_tiny_imagenet_errors_name_the_file(tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    _tiny_imagenet(root)
    boxes = root / "train" / "n001" / "n001_boxes.txt"
    boxes.write_text("n001_0.JPEG\t0\t0\t63\t63\nn001_1.JPEG\t10\t20\tforty\t50\n")
    with pytest.raises(ValueError, match="n001_boxes.txt, line 2: expected 4 box corners"):
        load_source("tinyimagenet", str(root))
    boxes.write_text("n001_0.JPEG\t0\t0\t63\n")
    with pytest.raises(ValueError, match="n001_boxes.txt, line 1: expected 5"):
        load_source("tinyimagenet", str(root))
    boxes.write_text("n001_0.JPEG\t0\t0\t63\t63\nn001_7.JPEG\t0\t0\t63\t63\n")
    with pytest.raises(FileNotFoundError, match="line 2: image .*n001_7.JPEG does not exist"):
        load_source("tinyimagenet", str(root))
    (root / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt, line 2: image .*val_1.JPEG"):
        load_source("tinyimagenet", str(root / "val"))
    with pytest.raises(ValueError, match="not a Tiny ImageNet folder"):
        load_source("tinyimagenet", str(root / "train" / "n001" / "images"))
    with pytest.raises(FileNotFoundError, match="no such Tiny ImageNet folder"):
        load_source("tinyimagenet", str(tmp_path / "absent"))


def _davis(root):
    """DAVIS: 'cat' (3 frames, the last mask empty) and 'dog' (2 frames), 32x24 px."""
    for name, count in (("cat", 3), ("dog", 2)):
        for k in range(count):
            _jpeg(root / "JPEGImages" / "480p" / name / f"{k:05d}.jpg", (24, 32, 3))
            mask = np.zeros((24, 32), np.uint8)
            if name == "dog" or k < 2:
                mask[4 + k : 12, 2:30] = 255  # rows 4+k..11, columns 2..29
            (root / "Annotations" / "480p" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "Annotations" / "480p" / name / f"{k:05d}.png"), mask)


def test_davis_boxes_visibility_and_errors(tmp_path):
    root = tmp_path / "DAVIS"
    _davis(root)
    cat, dog = load_source("seq", str(root)).trajectories
    assert cat.name == "cat" and len(cat) == 3 and cat.frames[2].name == "00002.jpg"
    assert cat.boxes[:2].tolist() == [[2, 4, 28, 8], [2, 5, 28, 7]]
    assert np.isnan(cat.boxes[2]).all() and cat.visible.tolist() == [True, True, False]  # empty mask: absent
    assert dog.visible.tolist() == [True, True] and dog.label is None
    assert [t.name for t in load_source("seq", str(root), exclude={"cat"}).trajectories] == ["dog"]

    (root / "JPEGImages" / "480p" / "cat" / "00002.jpg").unlink()  # the last frame: no numbering gap shows it
    with pytest.raises(FileNotFoundError, match="no frame .*cat/00002.jpg for mask"):
        load_source("seq", str(root))
    (root / "Annotations" / "480p" / "cat" / "00002.png").unlink()
    (root / "Annotations" / "480p" / "dog" / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match="no mask .*dog/00001.png"):
        load_source("seq", str(root))


def test_the_laid_out_data():
    """../traindata_large as tools/traindata_large.py lays it out from the pinned snapshots."""
    tiny, davis = TRAIN_LARGE / "tiny-imagenet-200", TRAIN_LARGE / "DAVIS"
    if not (tiny.is_dir() and davis.is_dir()):
        pytest.skip(f"{TRAIN_LARGE} not laid out (python tools/traindata_large.py)")
    train, val = load_tiny_imagenet(tiny, min_size=0), load_tiny_imagenet(tiny / "val", min_size=0)
    # 200 classes with 500 boxed images each (2 more class folders have images but no boxes file);
    # val: 10,100 images of 202 classes, the 2 box-less classes included.
    assert len(train) == 100_000 and len({t.label for t in train}) == 200
    assert len(val) == 10_100 and len({t.label for t in val}) == 202
    assert len(load_source("tinyimagenet", str(tiny)).trajectories) == 87_099  # boxes of 16 px and more
    assert len(load_source("tinyimagenet", str(tiny / "val")).trajectories) == 8_669
    videos = load_source("seq", str(davis)).trajectories
    assert len(videos) == 20 and sum(len(v) for v in videos) == 1_376
    assert all(v.visible.all() for v in videos)  # every mask of DAVIS 2016 val is non-empty
    assert all(v.frame(0).shape == (480, 854, 3) for v in videos[:2])
