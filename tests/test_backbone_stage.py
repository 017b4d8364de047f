"""The backbone stage (issue 21): conv1-4 classify labelled objects, then start the matching stage."""
import numpy as np
import pytest
import torch

from conftest import labelled_source

from mlt_plugin.networks.weights_io import load_matching
from mlt_plugin.sequences import Sequence
from mlt_plugin.training.datasets.sources import Source
from mlt_plugin.training.sampling import ClassificationDataset, class_index
from mlt_plugin.training.trainer import BackboneStage, MatchingStage

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")




def test_classes_and_batches():
    source = labelled_source()
    unlabelled = Source("seq", "memory", 1.0, [Sequence("video", [np.zeros((64, 64, 3), np.uint8)], np.array([[8.0, 8, 32, 32]]))])
    classes = class_index([source, unlabelled])
    assert classes == {"bright": 0, "dark": 1}
    batch = ClassificationDataset([source, unlabelled], classes, 2, batch_size=4)[1]
    assert batch["x"].shape == (4, 3, 127, 127) and batch["x"].dtype == torch.uint8
    assert batch["label"].dtype == torch.long and set(batch["label"].tolist()) <= {0, 1}
    again = ClassificationDataset([source, unlabelled], classes, 2, batch_size=4)[1]
    assert torch.equal(batch["x"], again["x"])  # batch i is a function of (seed, i): resumable
    with pytest.raises(ValueError, match="labelled"):
        class_index([unlabelled])


def test_backbone_stage_learns_and_exports_a_matching_init(tmp_path):
    torch.manual_seed(0)
    source = labelled_source()
    stage = BackboneStage(CPU)
    stage.prepare([source], 0, 1)
    model = stage.trainable().train()
    batch = ClassificationDataset([source], stage.classes, 1, batch_size=6)[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = stage.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    result = stage.validation(model, stage.validation_data([source], [labelled_source(seed=1)], 4, 2, 0))
    assert list(result)[0] == "validation" and 0 <= result["validation_accuracy"] <= 1 and "gap" in result

    stage.export(tmp_path)
    net = load_matching(tmp_path / "backbone.safetensors")
    assert net.out_channels == 192
    trained = model.backbone.state_dict()["0.weight"]
    assert torch.allclose(net.state_dict()["backbone.0.weight"], trained.half().float())
    matching = MatchingStage(192, CPU)
    matching.load_init(tmp_path / "backbone.safetensors")  # what `mlt train matching --init` does
    assert torch.allclose(matching.model.state_dict()["backbone.0.weight"], trained.half().float())


def _tiny_imagenet(root):
    """Two classes of train images and two val images, in Tiny ImageNet's layout (64x64 JPEGs)."""
    import cv2

    rng = np.random.default_rng(0)
    for wnid in ("n01", "n02"):
        folder = root / "train" / wnid
        (folder / "images").mkdir(parents=True)
        lines = []
        for k in range(3):
            cv2.imwrite(str(folder / "images" / f"{wnid}_{k}.JPEG"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            lines.append(f"{wnid}_{k}.JPEG\t{k}\t2\t{40 + k}\t50")
        (folder / f"{wnid}_boxes.txt").write_text("\n".join(lines) + "\n")
    (root / "val" / "images").mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(root / "val" / "images" / f"val_{k}.JPEG"), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    # val_1's box is 6x5 px: too small to crop an exemplar from, left out.
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t32\t44\t62\nval_1.JPEG\tn01\t52\t55\t57\t59\n")


def test_tiny_imagenet_reader(tmp_path):
    from mlt_plugin.training.datasets import load_source

    _tiny_imagenet(tmp_path / "tiny-imagenet-200")
    train = load_source("tinyimagenet", str(tmp_path / "tiny-imagenet-200"))
    assert len(train.trajectories) == 6 and {t.label for t in train.trajectories} == {"n01", "n02"}
    first = train.trajectories[0]
    assert first.label == "n01" and first.boxes[0].tolist() == [0, 2, 41, 49]  # inclusive corners
    assert first.frame(0).shape == (64, 64, 3)
    val = load_source("tinyimagenet", str(tmp_path / "tiny-imagenet-200" / "val"))
    assert [(t.label, t.boxes[0].tolist()) for t in val.trajectories] == [("n02", [0, 32, 45, 31])]
    batch = ClassificationDataset([train], class_index([train]), 1, batch_size=3)[0]
    assert batch["x"].shape == (3, 3, 127, 127)

    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn02\t0\t32\n")
    with pytest.raises(ValueError, match="line 1: expected 6"):
        load_source("tinyimagenet", str(tmp_path / "tiny-imagenet-200" / "val"))
    with pytest.raises(ValueError, match="not a Tiny ImageNet folder"):
        load_source("tinyimagenet", str(tmp_path / "tiny-imagenet-200" / "train" / "n01"))


def test_look_alikes_of_the_same_class_are_pasted_beside_the_target():
    """Labelled stills: with distractor pairs on, z holds a second object of the target's class, while
    the label map still has its positive only at the target."""
    from mlt_plugin.training.sampling import CropSampler, PairDataset

    source = labelled_source(count=4)
    options = dict(batch_size=4, negative=0.0, paste=0.0, occlude=0.0, rotate=0.0, sampler=CropSampler(flip=False))
    plain = PairDataset([source], 1, distractor=0.0, **options)
    hard = PairDataset([source], 1, distractor=1.0, **options)
    assert set(hard.same_label) == {"bright", "dark"}
    a, b = plain[0], hard[0]
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["centers"], b["centers"])  # same targets, same labels
    changed = (a["z"].int() - b["z"].int()).abs().sum((1, 2, 3))
    assert (changed > 0).all()  # every search crop got its look-alike


def test_meta_cache_context_crops_of_labelled_stills_hold_look_alikes():
    """Feature cache of the meta stage (issue 23): every other search crop of a labelled still object has
    another object of its class pasted beside the target."""
    from mlt_plugin.training.feature_cache import _FrameCrops
    from mlt_plugin.training.sampling import CropSampler

    bright_squares = [t for t in labelled_source(count=4).trajectories if t.label == "bright"]  # on dark
    dataset = _FrameCrops(bright_squares, [(0, 0)], crops_per_frame=2, seed=0, still=True)
    dataset.sampler = CropSampler(scale_jitter=0.0, shift_jitter=0.0, flip=False)  # two crops alike but for the paste
    _, z, centers = dataset[0]
    assert torch.equal(centers, torch.zeros(2, 2))
    bright = [int((crop.int().sum(0) > 500).sum()) for crop in z]
    assert bright[0] > 1000 and bright[1] > 1.5 * bright[0]  # crop 1: a second bright square beside the target
