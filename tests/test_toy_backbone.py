"""A backbone is one plug-in: a toy extractor, registered in this test alone, trains one step and tracks
with the weights it wrote. No other file names it (extractors.py: the ``Extractor`` interface)."""
import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mlt_plugin.cli import main
from mlt_plugin.demo import demo_sequence
from mlt_plugin.networks import extractors
from mlt_plugin.params import load_parameters
from mlt_plugin.tracking.tracker import MLT


class ToyExtractor(extractors.Extractor, nn.Module):
    """One strided conv: stride 8 with the lite extractor's sides (127 -> 16, 255 -> 32)."""

    name, channels, pretrained = "toy", 16, False
    default_files = {}

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, self.channels, 8, stride=8, padding=4)

    @staticmethod
    def feature_side(side: int) -> int:
        return side // 8 + 1

    def forward(self, images):
        return F.relu(self.conv(images / 255.0))


def test_a_toy_backbone_trains_and_tracks(tmp_path, monkeypatch, one_thread):
    monkeypatch.setitem(extractors.EXTRACTORS, "toy", ToyExtractor)
    sequence = demo_sequence(num_frames=6)
    folder = tmp_path / "source" / "demo"  # an OTB-layout training source
    (folder / "img").mkdir(parents=True)
    for index in range(len(sequence)):
        frame = cv2.cvtColor(sequence.frame(index), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / "img" / f"{index + 1:04d}.jpg"), frame)
    np.savetxt(folder / "groundtruth_rect.txt", sequence.boxes + [1, 1, 0, 0], fmt="%g", delimiter=",")
    run = tmp_path / "run"
    assert main(["train", "mt", "--extractor", "toy", "--source", f"seq:{tmp_path / 'source'}", "--out", str(run),
                 "--iterations", "1", "--batch-size", "2", "--workers", "0", "--threads", "1"]) == 0

    params = load_parameters("paper_mt")
    params.extractor, params.weights, params.device, params.precision = "toy", run / "mlt_mt.safetensors", "cpu", "fp32"
    tracker = MLT(params)
    assert isinstance(tracker.net.backbone, ToyExtractor) and tracker.net.conv5.weight.shape == (224, 16, 1, 1)
    tracker.initialize(sequence.frame(0), sequence.boxes[0])
    boxes = np.array([tracker.track(sequence.frame(i))["target_bbox"] for i in (1, 2, 3)])
    assert tracker.search_engine is None  # no engine of its own: torch runs it
    assert np.isfinite(boxes).all() and (boxes[:, 2:] > 0).all()
    trained = torch.load(run / "checkpoint.pt", weights_only=False)["model"]["backbone.conv.weight"]
    assert torch.equal(tracker.net.backbone.conv.weight, trained.half().float())  # the file holds the trained step
