"""One-time pre-cropping of training frames, as SiamFC's curated ILSVRC VID.

Every visible frame of every trajectory becomes one square JPEG crop of ``CROP_SIZE`` pixels centred
on the target, at the scale of a 255 search crop (the target's context square is 127 pixels wide).
The cropped trajectories are ordinary sequences (crop paths, boxes in crop coordinates), so
PairDataset / EpisodeDataset cut x and z out of them with their usual jitter, reading a small JPEG
instead of decoding a full frame.

Layout: ``DIR/<source>-<key>/<trajectory number>/<frame number>.jpg`` + ``index.json``; the key
hashes the source's content and the crop settings, so a changed source builds a new folder.
"""
import hashlib
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from mlt_plugin.sequences import Sequence
from mlt_plugin.tracking.crops import context_size, crop_square
from mlt_plugin.training.datasets.sources import Source, source_digest
from mlt_plugin.training.sampling import EXEMPLAR, INSTANCE, pair_sampler

FORMAT_VERSION = 1
_DEFAULT = pair_sampler()  # the largest jitter of the samplers
# Room for the largest search crop the samplers cut: a 255 crop scaled up by the scale jitter and
# moved by the shift jitter (both in 255-crop pixels), plus a pixel of rounding on each side.
CROP_SIZE = 2 * math.ceil(math.exp(_DEFAULT.scale_jitter) * (INSTANCE / 2 + _DEFAULT.shift_jitter)) + 2  # 392
JPEG_QUALITY = 95


def _crop_box(box, size, context_amount):
    """The target's box in its crop: centred, scaled by EXEMPLAR / context side."""
    scale = EXEMPLAR / context_size(box[2], box[3], context_amount)
    w, h = box[2] * scale, box[3] * scale
    return [size / 2 - w / 2, size / 2 - h / 2, w, h]


class _Curate(torch.utils.data.Dataset):
    """Item n: crop one (trajectory, frame) and write it as JPEG (in loader workers, in parallel)."""

    def __init__(self, trajectories, items, folder, size, context_amount):
        self.trajectories, self.items, self.folder = trajectories, items, folder
        self.size, self.context_amount = size, context_amount

    def __len__(self):
        return len(self.items)

    def __getitem__(self, n):
        t, f = self.items[n]
        traj = self.trajectories[t]
        image, (x, y, w, h) = traj.frame(f), traj.boxes[f]
        side = context_size(w, h, self.context_amount) * self.size / EXEMPLAR
        crop = crop_square(image, (x + w / 2, y + h / 2), side, self.size, image.mean((0, 1)))
        path = self.folder / str(t) / f"{f}.jpg"
        path.parent.mkdir(exist_ok=True)
        if not cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"cannot write crop {path}")
        return 0


def _build(folder, source, size, context_amount, workers):
    items = [(t, int(f)) for t, traj in enumerate(source.trajectories) for f in np.flatnonzero(traj.visible)]
    partial = folder.with_name(folder.name + ".partial")  # renamed when complete: a crash leaves no half cache
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    loader = torch.utils.data.DataLoader(_Curate(source.trajectories, items, partial, size, context_amount),
                                         batch_size=None, num_workers=min(workers, 2),
                                         generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone
    for _ in tqdm(loader, total=len(items), desc=f"crop cache {source.kind}:{Path(source.root).name}", unit="frame"):
        pass
    index = {
        "version": FORMAT_VERSION, "kind": source.kind, "root": str(source.root), "size": size,
        "context_amount": context_amount,
        "trajectories": [
            {"name": traj.name, "length": len(traj), "frames": np.flatnonzero(traj.visible).tolist(),
             "boxes": [_crop_box(traj.boxes[f], size, context_amount) for f in np.flatnonzero(traj.visible)]}
            for traj in source.trajectories
        ],
    }
    (partial / "index.json").write_text(json.dumps(index))
    partial.rename(folder)


def load_crop_cache(folder, weight=1.0) -> Source:
    """A built crop cache folder as a Source of cropped trajectories (frame numbers as in the original)."""
    folder = Path(folder)
    index_file = folder / "index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"crop cache {folder} has no index.json (incomplete build? delete it)")
    index = json.loads(index_file.read_text())
    if index.get("version") != FORMAT_VERSION:
        raise ValueError(f"crop cache {index_file} has format {index.get('version')}, expected {FORMAT_VERSION}")
    trajectories = []
    for t, entry in enumerate(index["trajectories"]):
        # Keep the original frame numbering (None for frames not cropped) so max_gap means the same.
        frames, boxes = [None] * entry["length"], np.full((entry["length"], 4), np.nan)
        for f, box in zip(entry["frames"], entry["boxes"]):
            frames[f], boxes[f] = folder / str(t) / f"{f}.jpg", box
        trajectories.append(Sequence(entry["name"], frames, boxes, np.isfinite(boxes[:, 0])))
    return Source(index["kind"], index["root"], weight, trajectories)


def prepare_crop_cache(cache_dir, sources, workers=2, size=CROP_SIZE, context_amount=0.5, build=True) -> list:
    """The cropped form of each source, building the absent ones when ``build`` (else they must exist)."""
    cached = []
    for source in sources:
        key = hashlib.sha256(f"{FORMAT_VERSION}-{source_digest(source)}-{size}-{context_amount}".encode()).hexdigest()[:16]
        folder = Path(cache_dir) / f"{source.kind}-{Path(source.root).name}-{key}"
        if not folder.is_dir():
            if not build:
                raise FileNotFoundError(f"crop cache {folder} is missing (the first process should have built it)")
            _build(folder, source, size, context_amount, workers)
        cached.append(load_crop_cache(folder, source.weight))
    return cached
