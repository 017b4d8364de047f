"""The backbone stage (issue 21): conv1-4 classify labelled objects, then start the matching stage."""
import numpy as np
import pytest
import torch

from mlt_plugin.networks.weights_io import load_matching
from mlt_plugin.sequences import Sequence
from mlt_plugin.training.datasets.sources import Source
from mlt_plugin.training.sampling import ClassificationDataset, class_index
from mlt_plugin.training.trainer import BackboneStage, MatchingStage

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _labelled_source(count=6, seed=0):
    """Still 64x64 images of two classes (bright squares on dark, dark squares on bright), one box each."""
    rng = np.random.default_rng(seed)
    objects = []
    for k in range(count):
        label = "bright" if k % 2 else "dark"
        image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8) + (0 if label == "bright" else 190)
        x, y = rng.integers(8, 24, 2)
        image[y : y + 32, x : x + 32] = 255 - image[y : y + 32, x : x + 32]
        objects.append(Sequence(f"img{k}", [image], np.array([[x, y, 32, 32]], float), label=label))
    return Source("tinyimagenet", "memory", 1.0, objects)


def test_classes_and_batches():
    source = _labelled_source()
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
    source = _labelled_source()
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
    result = stage.validation(model, stage.validation_data([source], [_labelled_source(seed=1)], 4, 2, 0))
    assert list(result)[0] == "validation" and 0 <= result["validation_accuracy"] <= 1 and "gap" in result

    stage.export(tmp_path)
    net = load_matching(tmp_path / "backbone.safetensors")
    assert net.out_channels == 192
    trained = model.net.state_dict()["backbone.0.weight"]
    assert torch.allclose(net.state_dict()["backbone.0.weight"], trained.half().float())
    matching = MatchingStage(192, CPU)
    matching.load_init(tmp_path / "backbone.safetensors")  # what `mlt train matching --init` does
    assert torch.allclose(matching.model.state_dict()["backbone.0.weight"], trained.half().float())
