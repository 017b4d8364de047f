"""Named training sources: a dataset kind and root, read into trajectories, with a sampling weight."""
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlt_plugin.sequences import load_sequences
from mlt_plugin.training.datasets.coco import load_yolo_images
from mlt_plugin.training.datasets.tinyimagenet import load_tiny_imagenet
from mlt_plugin.training.datasets.vid import load_vid

KINDS = ("seq", "vid", "coco", "tinyimagenet")


@dataclass
class Source:
    kind: str
    root: str
    weight: float
    trajectories: list


def load_source(kind: str, root: str, weight: float = 1.0, exclude=()) -> Source:
    """Read one root. kind 'seq': any video layout mlt_plugin.sequences reads (OTB, VOT, LaSOT, GOT-10k,
    UAV123, UAVDT, DTB70, DAVIS); 'vid': ILSVRC VID; 'coco': YOLO still images; 'tinyimagenet': labelled
    still images (Tiny ImageNet's train or val folder)."""
    if kind == "seq":
        trajectories = [s for s in load_sequences(root) if s.name not in exclude and s.visible.sum() >= 2]
    elif kind == "vid":
        trajectories = [s for s in load_vid(root, exclude) if s.visible.sum() >= 2]
    elif kind == "coco":
        trajectories = load_yolo_images(root)
    elif kind == "tinyimagenet":
        trajectories = load_tiny_imagenet(root)
    else:
        raise ValueError(f"unknown source kind {kind!r}; expected one of {KINDS}")
    if not trajectories:
        raise ValueError(f"no usable trajectories found in {kind} root {root}")
    return Source(kind, str(root), weight, trajectories)


def parse_source_spec(spec: str):
    """'kind:root[:weight]' -> (kind, root, weight), e.g. 'seq:../shared/data/otb:2'."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or parts[0] not in KINDS:
        raise ValueError(f"bad source {spec!r}: expected KIND:ROOT[:WEIGHT] with KIND in {KINDS}")
    return parts[0], parts[1], float(parts[2]) if len(parts) == 3 else 1.0


def source_digest(source: Source) -> str:
    """A hash of what a source holds (kind, root, trajectory names, boxes, visibility): caches built
    from a source are keyed by it, so a changed annotation or exclude list never reuses a stale cache."""
    digest = hashlib.sha256(f"{source.kind}\n{Path(source.root).resolve()}\n".encode())
    for trajectory in source.trajectories:
        digest.update(trajectory.name.encode() + b"\n")
        digest.update(np.ascontiguousarray(trajectory.boxes, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(trajectory.visible, dtype=bool).tobytes())
    return digest.hexdigest()
