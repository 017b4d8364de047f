"""Training samples: (x, z) pairs for eq. (6) and (x, z_reg) episodes for eq. (7).

Sample ``k`` of batch ``i`` is drawn from a generator seeded with (seed, i, k), so a resumed run sees
exactly the batches an uninterrupted one would, whatever the number of loader workers or processes.
"""
import cv2
import numpy as np
import torch

from mlt_plugin.tracking.crops import context_size, crop_square

from mlt_plugin.geometry import EXEMPLAR_SIZE as EXEMPLAR, INSTANCE_SIZE as INSTANCE, TOTAL_STRIDE as STRIDE


class CropSampler:
    """Crops a target out of a frame with SiamFC context, plus scale/shift jitter and photometric noise."""

    def __init__(self, context_amount=0.5, scale_jitter=0.05, shift_jitter=8.0, flip=True, blur=0.0, noise=0.0,
                 color=0.0):
        self.context_amount = context_amount
        self.scale_jitter = scale_jitter
        self.shift_jitter = shift_jitter  # in crop pixels (255 scale); 8 px = one response cell
        self.flip = flip
        self.blur = blur  # probability of a Gaussian blur
        self.noise = noise  # std of additive Gaussian pixel noise
        self.color = color  # per-channel gain in [1 - color, 1 + color] and a brightness shift of +-40 * color

    def crop(self, rng, image, box, out_size, shift=True):
        """Returns the crop (out_size, out_size, 3) and the target offset from its centre, in crop pixels (dy, dx)."""
        x, y, w, h = box
        side = context_size(w, h, self.context_amount) * out_size / EXEMPLAR
        side *= float(np.exp(rng.uniform(-self.scale_jitter, self.scale_jitter)))
        offset = rng.uniform(-self.shift_jitter, self.shift_jitter, size=2) if shift else np.zeros(2)
        # Move the crop by -offset so the target sits at +offset (crop pixels) from the crop centre.
        center = (x + w / 2 - offset[1] * side / out_size, y + h / 2 - offset[0] * side / out_size)
        patch = crop_square(image, center, side, out_size, image.mean((0, 1)))
        return patch, offset

    def search_crop(self, rng, image, box):
        """An augmented search patch z (255, with flip, blur, noise, translation) and its target offset in cells."""
        z, offset = self.crop(rng, image, box, INSTANCE)
        if self.flip and rng.random() < 0.5:
            z, offset = z[:, ::-1], offset * [1, -1]
        return self.photometric(rng, z), offset / STRIDE

    def photometric(self, rng, patch):
        if self.blur and rng.random() < self.blur:
            patch = cv2.GaussianBlur(patch, (0, 0), rng.uniform(0.5, 1.5))
        if self.color:
            gain = rng.uniform(1 - self.color, 1 + self.color, size=3)
            shift = rng.uniform(-40 * self.color, 40 * self.color)
            patch = np.clip(patch * gain + shift, 0, 255).astype(np.uint8)
        if self.noise:
            patch = np.clip(patch + rng.normal(0, self.noise, patch.shape), 0, 255).astype(np.uint8)
        return patch


def _to_tensor(patches):
    return torch.from_numpy(np.ascontiguousarray(np.stack(patches).transpose(0, 3, 1, 2)))


class _SourceMixture:
    def __init__(self, sources):
        self.sources = sources
        weights = np.array([s.weight for s in sources], dtype=np.float64)
        self.weights = weights / weights.sum()

    def pick(self, rng):
        """A source by weight, then one of its trajectories uniformly: (source, trajectory)."""
        source = self.sources[rng.choice(len(self.sources), p=self.weights)]
        return source, source.trajectories[rng.integers(len(source.trajectories))]

    def trajectory(self, rng):
        return self.pick(rng)[1]


def _visible_frames(trajectory):
    return np.flatnonzero(trajectory.visible)


def episode_sampler():
    """The augmentation of the meta-learner's context patches (paper 3.2.2: flip, noise, blur, translation)."""
    return CropSampler(blur=0.2, noise=3.0)


def still_episode_sampler():
    """Heavy augmentation for episodes made from one still image (COCO objects as extra identities): with
    no second frame, scale (+-30 %), translation (+-3 cells), colour, blur and noise stand in for the
    appearance changes of a trajectory."""
    return CropSampler(scale_jitter=0.3, shift_jitter=24.0, blur=0.5, noise=8.0, color=0.3)


def context_candidates(frames, anchor, num_reg, max_gap):
    """Indices into ``frames`` (sorted frame numbers of one trajectory) that may be context for the anchor
    ``frames[anchor]``: every frame within ``max_gap`` of it, or the ``num_reg`` nearest where fewer are
    that close (a sparsely cached long trajectory still gives distinct frames). Never the anchor's own frame
    (issue 12: the anchor's frame among its context patches makes delta and eq. (7) trivial); for a
    one-frame trajectory (a still image), its own frame, whose augmented crops are then the context."""
    index = np.arange(len(frames))
    if len(frames) == 1:
        return index
    others = index[frames != frames[anchor]]
    gap = np.abs(frames[others] - frames[anchor])
    near = others[gap <= max_gap]
    if len(near) < num_reg:
        near = others[np.argsort(gap, kind="stable")[:num_reg]]
    return near


def episode_frames(rng, frames, num_reg, max_gap):
    """An anchor frame and ``num_reg`` context frames near it, never the anchor's own frame (repeats only when
    too few)."""
    anchor = rng.integers(len(frames))
    near = frames[context_candidates(frames, anchor, num_reg, max_gap)]
    return frames[anchor], rng.choice(near, size=num_reg, replace=len(near) < num_reg)


class PairDataset(torch.utils.data.Dataset):
    """Item ``i``: batch ``i`` of (x, z, target offsets in cells) pairs from one trajectory each."""

    def __init__(self, sources, iterations, batch_size=8, max_gap=100, seed=0, sampler=None, first_sample=0):
        self.mixture = _SourceMixture(sources)
        self.iterations = iterations
        self.batch_size = batch_size
        self.first_sample = first_sample  # this process's slice of the global batch (DDP)
        self.max_gap = max_gap
        self.seed = seed
        self.sampler = sampler or CropSampler()

    def __len__(self):
        return self.iterations

    def __getitem__(self, iteration):
        xs, zs, centers = [], [], []
        for k in range(self.first_sample, self.first_sample + self.batch_size):
            rng = np.random.default_rng([self.seed, iteration, k])
            traj = self.mixture.trajectory(rng)
            frames = _visible_frames(traj)
            i = rng.choice(frames)
            near = frames[np.abs(frames - i) <= self.max_gap]
            j = rng.choice(near)
            image_i = traj.frame(i)
            image_j = image_i if j == i else traj.frame(j)
            x, _ = self.sampler.crop(rng, image_i, traj.boxes[i], EXEMPLAR, shift=False)
            z, offset = self.sampler.crop(rng, image_j, traj.boxes[j], INSTANCE)
            if self.sampler.flip and rng.random() < 0.5:  # the same flip for both keeps them a pair
                x, z, offset = x[:, ::-1], z[:, ::-1], offset * [1, -1]
            xs.append(self.sampler.photometric(rng, x))
            zs.append(self.sampler.photometric(rng, z))
            centers.append(offset / STRIDE)
        return {"x": _to_tensor(xs), "z": _to_tensor(zs), "centers": torch.tensor(np.array(centers), dtype=torch.float32)}


class EpisodeDataset(torch.utils.data.Dataset):
    """Item ``i``: batch ``i`` of meta-learning episodes, one anchor x and ``num_reg`` context patches z_reg
    from one trajectory each (the first ``num_delta`` of them form z_delta)."""

    def __init__(self, sources, iterations, batch_size=8, num_reg=16, max_gap=100, seed=0, sampler=None, first_sample=0):
        self.mixture = _SourceMixture(sources)
        self.iterations = iterations
        self.batch_size = batch_size
        self.first_sample = first_sample
        self.num_reg = num_reg
        self.max_gap = max_gap
        self.seed = seed
        self.sampler = sampler or episode_sampler()

    def __len__(self):
        return self.iterations

    def __getitem__(self, iteration):
        xs, zs, centers = [], [], []
        for k in range(self.first_sample, self.first_sample + self.batch_size):
            rng = np.random.default_rng([self.seed, iteration, k])
            traj = self.mixture.trajectory(rng)
            i, context = episode_frames(rng, _visible_frames(traj), self.num_reg, self.max_gap)
            x, _ = self.sampler.crop(rng, traj.frame(i), traj.boxes[i], EXEMPLAR, shift=False)
            xs.append(x)
            cache = {}
            for j in context:
                if j not in cache:
                    cache[j] = traj.frame(j)
                z, center = self.sampler.search_crop(rng, cache[j], traj.boxes[j])
                zs.append(z)
                centers.append(center)
        return {
            "x": _to_tensor(xs),
            "z": _to_tensor(zs),  # (B * num_reg, 3, 255, 255), grouped by episode
            "centers": torch.tensor(np.array(centers), dtype=torch.float32),
        }
