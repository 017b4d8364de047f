"""A conv4 feature cache for meta-learner training (eq. 7).

The matching network is frozen while the meta-learner trains, so its conv4 features of the crops
never change: computing them once instead of for 8 x (1 + 16) crops per iteration leaves only the
last layer, eq. (2) and the meta-learner to run per iteration.

For each trajectory the cache keeps up to ``frames_per_trajectory`` visible frames (evenly spaced),
and for each frame: the exemplar crop's conv4 features (256x8x8) and ``crops_per_frame`` augmented
search crops' conv4 features (256x24x24, flip / noise / blur / translation as on the fly) with the
target's offset in cells. Everything is fp16 .npy, read through memory maps.

Still images (``coco`` and ``tinyimagenet`` sources, one frame per trajectory) get ``still_crops`` search
crops per object with heavy augmentation (``still_episode_sampler``), so that an episode can be made from
one object: its clean exemplar crop as the anchor and its augmented crops as context (COCO
objects as extra identities). Where the objects carry class labels (Tiny ImageNet), every other crop has
another kept object of the same class pasted beside the target (the meta-learner's filters
must tell a target from its look-alikes). At most ``max_stills`` objects of at least ``min_still_size``
pixels are kept per source (chosen by the seed).

Layout: ``DIR/<source>-<key>/{exemplar.npy, search.npy, centers.npy, index.json}``, one folder per
source. The key hashes the matching network's weights, the source's trajectories and the settings,
so a cache is reused only for exactly what it was built from; anything else builds a new folder.
"""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mlt_plugin.geometry import EXEMPLAR_SIZE, INSTANCE_SIZE
from mlt_plugin.training.datasets.sources import source_digest
from mlt_plugin.training.datasets.sources import Source
from mlt_plugin.training.sampling import (
    EXEMPLAR, _SourceMixture, _to_tensor, _visible_frames, context_candidates, episode_sampler, other_of,
    same_label_groups, still_episode_sampler,
)

FORMAT_VERSION = 1
STILL_KINDS = ("coco", "tinyimagenet")


def network_fingerprint(net) -> str:
    """A hash of the feature extractor's weights: cached features belong to exactly one extractor, whatever
    last layer sits on it (the matching stage with a frozen extractor and the meta stage share a cache)."""
    digest = hashlib.sha256(net.extractor.encode())
    for name, tensor in sorted(net.backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def cached_frames(trajectory, limit: int) -> np.ndarray:
    """At most ``limit`` visible frames, evenly spaced over the trajectory's visible frames."""
    frames = _visible_frames(trajectory)
    if len(frames) <= limit:
        return frames
    return frames[np.unique(np.linspace(0, len(frames) - 1, limit).round().astype(int))]


class _FrameCrops(torch.utils.data.Dataset):
    """Item n: one cached frame's exemplar crop, its augmented search crops and their target offsets."""

    def __init__(self, trajectories, items, crops_per_frame, seed, still=False):
        self.trajectories, self.items = trajectories, items
        self.crops_per_frame, self.seed = crops_per_frame, seed
        self.sampler = still_episode_sampler() if still else episode_sampler()
        self.same_label = same_label_groups([Source("", "", 1.0, trajectories)]) if still else {}

    def __len__(self):
        return len(self.items)

    def __getitem__(self, n):
        t, f = self.items[n]
        traj = self.trajectories[t]
        rng = np.random.default_rng([self.seed, t, f])
        image, box = traj.frame(f), traj.boxes[f]
        x, _, _ = self.sampler.crop(rng, image, box, EXEMPLAR, shift=False)  # as EpisodeDataset's anchor
        group = self.same_label.get(traj.label)
        zs, centers = zip(*(
            self.sampler.search_crop(rng, image, box, other_of(rng, group, traj) if group and k % 2 else None)
            for k in range(self.crops_per_frame)))
        return _to_tensor([x])[0], _to_tensor(zs), torch.tensor(np.array(centers), dtype=torch.float32)


def _source_key(source, fingerprint, frames_per_trajectory, crops_per_frame, seed) -> str:
    description = {
        "version": FORMAT_VERSION, "network": fingerprint, "source": source_digest(source),
        "frames_per_trajectory": frames_per_trajectory, "crops_per_frame": crops_per_frame, "seed": seed,
    }
    if source.kind in STILL_KINDS:
        description["augmentation"] = "still, look-alikes" if source.kind == "tinyimagenet" else "still"
    description = json.dumps(description)
    return hashlib.sha256(description.encode()).hexdigest()[:16]


@torch.no_grad()
def _build(folder, source, net, device, frames_per_trajectory, crops_per_frame, seed, workers, batch_frames, amp):
    frames = [cached_frames(t, frames_per_trajectory) for t in source.trajectories]
    items = [(t, int(f)) for t, fs in enumerate(frames) for f in fs]
    partial = folder.with_name(folder.name + ".partial")  # renamed when complete: a crash leaves no half cache
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    channels, x_side, z_side = (net.backbone.channels, net.backbone.feature_side(EXEMPLAR_SIZE),
                                net.backbone.feature_side(INSTANCE_SIZE))
    exemplar = np.lib.format.open_memmap(partial / "exemplar.npy", "w+", np.float16, (len(items), channels, x_side, x_side))
    search = np.lib.format.open_memmap(
        partial / "search.npy", "w+", np.float16, (len(items), crops_per_frame, channels, z_side, z_side))
    centers = np.zeros((len(items), crops_per_frame, 2), np.float32)
    loader = torch.utils.data.DataLoader(
        _FrameCrops(source.trajectories, items, crops_per_frame, seed, still=source.kind in STILL_KINDS), batch_size=batch_frames,
        num_workers=min(workers, 2), generator=torch.Generator().manual_seed(seed))  # leaves the global RNG alone
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16, enabled=amp)
    row = 0
    for x, z, offsets in tqdm(loader, desc=f"feature cache {source.kind}:{Path(source.root).name}", unit="batch"):
        n = len(x)
        with autocast:
            x4 = net.conv4_features(x.to(device).float())
            z4 = net.conv4_features(z.flatten(0, 1).to(device).float())
        exemplar[row : row + n] = x4.float().cpu().numpy().astype(np.float16)
        search[row : row + n] = z4.float().cpu().numpy().astype(np.float16).reshape(n, crops_per_frame, *z4.shape[1:])
        centers[row : row + n] = offsets.numpy()
        row += n
    exemplar.flush()
    search.flush()
    np.save(partial / "centers.npy", centers)
    starts = np.cumsum([0] + [len(fs) for fs in frames])
    index = {
        "version": FORMAT_VERSION, "kind": source.kind, "root": str(source.root),
        "frames_per_trajectory": frames_per_trajectory, "crops_per_frame": crops_per_frame, "seed": seed,
        "trajectories": [{"name": t.name, "frames": fs.tolist(), "first_row": int(s)}
                         for t, fs, s in zip(source.trajectories, frames, starts)],
    }
    (partial / "index.json").write_text(json.dumps(index))
    partial.rename(folder)


class CachedSource:
    """One source's cached features: per trajectory, its cached frame numbers and their rows."""

    def __init__(self, folder, weight):
        self.folder = Path(folder)
        index_file = self.folder / "index.json"
        if not index_file.is_file():
            raise FileNotFoundError(f"feature cache {self.folder} has no index.json (incomplete build? delete it)")
        index = json.loads(index_file.read_text())
        if index.get("version") != FORMAT_VERSION:
            raise ValueError(f"feature cache {index_file} has format {index.get('version')}, expected {FORMAT_VERSION}")
        self.weight = weight
        self.crops_per_frame = index["crops_per_frame"]
        self.trajectories = [
            _CachedTrajectory(t["name"], np.array(t["frames"], dtype=np.int64), t["first_row"])
            for t in index["trajectories"] if t["frames"]
        ]
        self.centers = np.load(self.folder / "centers.npy")
        self._exemplar = self._search = None

    def arrays(self):
        """The feature memory maps, opened lazily so that loader workers each open their own."""
        if self._search is None:
            self._exemplar = np.load(self.folder / "exemplar.npy", mmap_mode="r")
            self._search = np.load(self.folder / "search.npy", mmap_mode="r")
        return self._exemplar, self._search

    def __getstate__(self):  # memory maps are not pickled into workers
        return {**self.__dict__, "_exemplar": None, "_search": None}


class _CachedTrajectory:
    def __init__(self, name, frames, first_row):
        self.name, self.frames, self.first_row = name, frames, first_row


def select_stills(source, max_stills, min_size, seed):
    """At most ``max_stills`` objects of a still-image source whose box is at least ``min_size`` px each way."""
    trajectories = [t for t in source.trajectories if np.min(t.boxes[0, 2:]) >= min_size]
    if len(trajectories) > max_stills:
        keep = np.sort(np.random.default_rng([seed, 12]).choice(len(trajectories), max_stills, replace=False))
        trajectories = [trajectories[k] for k in keep]
    return Source(source.kind, source.root, source.weight, trajectories)


def prepare_feature_cache(cache_dir, sources, net, device, frames_per_trajectory=40, crops_per_frame=2, seed=0,
                          workers=2, batch_frames=8, amp=False, build=True, still_crops=8, max_stills=200,
                          min_still_size=24):
    """The cached form of each source, building what is absent when ``build`` (else it must exist)."""
    cache_dir = Path(cache_dir)
    fingerprint = network_fingerprint(net)
    cached = []
    for source in sources:
        crops = crops_per_frame
        if source.kind in STILL_KINDS:
            source, crops = select_stills(source, max_stills, min_still_size, seed), still_crops
        key = _source_key(source, fingerprint, frames_per_trajectory, crops, seed)
        folder = cache_dir / f"{source.kind}-{Path(source.root).name}-{key}"
        if not folder.is_dir():
            if not build:
                raise FileNotFoundError(f"feature cache {folder} is missing (the first process should have built it)")
            was_training = net.training
            net.eval()
            _build(folder, source, net, device, frames_per_trajectory, crops, seed, workers, batch_frames, amp)
            net.train(was_training)
        cached.append(CachedSource(folder, source.weight))
    return cached


class CachedEpisodeDataset(torch.utils.data.Dataset):
    """EpisodeDataset over cached features: item ``i`` is batch ``i`` of episodes, each an anchor's
    exemplar features x4 and ``num_reg`` cached search features z4 of the same trajectory.

    Context frames are drawn by ``context_candidates``: within ``max_gap`` frames of the anchor, or its
    ``num_reg`` nearest cached frames where fewer are that close, never the anchor's own frame (a still
    image's context is its own augmented crops).
    """

    def __init__(self, cached_sources, iterations, batch_size=8, num_reg=16, max_gap=100, seed=0, first_sample=0):
        self.mixture = _SourceMixture(cached_sources)
        self.iterations = iterations
        self.batch_size = batch_size
        self.first_sample = first_sample
        self.num_reg = num_reg
        self.max_gap = max_gap
        self.seed = seed

    def __len__(self):
        return self.iterations

    def __getitem__(self, iteration):
        xs, zs, centers = [], [], []
        for k in range(self.first_sample, self.first_sample + self.batch_size):
            rng = np.random.default_rng([self.seed, iteration, k])
            source, traj = self.mixture.pick(rng)
            exemplar, search = source.arrays()
            # As on the fly: an anchor frame, then context near it; here each context sample is a
            # (frame, cached crop) pair, drawn without repeats while there are enough pairs.
            anchor = rng.integers(len(traj.frames))
            near = context_candidates(traj.frames, anchor, self.num_reg, self.max_gap)
            pairs = len(near) * source.crops_per_frame
            pick = rng.choice(pairs, size=self.num_reg, replace=pairs < self.num_reg)
            rows = traj.first_row + near[pick // source.crops_per_frame]
            crops = pick % source.crops_per_frame
            xs.append(exemplar[traj.first_row + anchor])
            zs.append(search[rows, crops])
            centers.append(source.centers[rows, crops])
        return {
            "x4": torch.from_numpy(np.stack(xs)),  # (B, C, 8, 8) fp16 (paper; lite: 16x16)
            "z4": torch.from_numpy(np.concatenate(zs)),  # (B * num_reg, C, 24, 24) fp16 (lite: 32x32), grouped by episode
            "centers": torch.from_numpy(np.concatenate(centers)),
        }
