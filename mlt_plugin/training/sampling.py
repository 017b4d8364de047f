"""Training samples: (x, z) pairs for eq. (6) and (x, z_reg) episodes for eq. (7).

Sample ``k`` of batch ``i`` is drawn from a generator seeded with (seed, i, k), so a resumed run sees
exactly the batches an uninterrupted one would, whatever the number of loader workers or processes.
"""
from pathlib import Path

import cv2
import numpy as np
import torch

from mlt_plugin.tracking.crops import context_size, crop_square

from mlt_plugin.geometry import EXEMPLAR_SIZE as EXEMPLAR, INSTANCE_SIZE as INSTANCE, TOTAL_STRIDE as STRIDE


class CropSampler:
    """Crops a target out of a frame with SiamFC context, plus scale/shift jitter and photometric noise."""

    def __init__(self, context_amount=0.5, scale_jitter=0.05, shift_jitter=8.0, flip=True, blur=0.0, noise=0.0,
                 color=0.0, grayscale=0.0):
        self.context_amount = context_amount
        self.scale_jitter = scale_jitter  # log-scale: the side is multiplied by exp(U(-j, j))
        self.shift_jitter = shift_jitter  # in crop pixels (255 scale); 8 px = one response cell
        self.flip = flip
        self.blur = blur  # probability of a Gaussian blur
        self.noise = noise  # std of additive Gaussian pixel noise
        self.color = color  # per-channel gain in [1 - color, 1 + color] and a brightness shift of +-40 * color
        self.grayscale = grayscale  # probability of dropping the colour

    def crop(self, rng, image, box, out_size, shift=True):
        """Returns the crop (out_size, out_size, 3), the target offset from its centre in crop pixels (dy, dx),
        and the scale (crop pixels per image pixel)."""
        x, y, w, h = box
        side = context_size(w, h, self.context_amount) * out_size / EXEMPLAR
        side *= float(np.exp(rng.uniform(-self.scale_jitter, self.scale_jitter)))
        offset = rng.uniform(-self.shift_jitter, self.shift_jitter, size=2) if shift else np.zeros(2)
        # Move the crop by -offset so the target sits at +offset (crop pixels) from the crop centre.
        center = (x + w / 2 - offset[1] * side / out_size, y + h / 2 - offset[0] * side / out_size)
        patch = crop_square(image, center, side, out_size, image.mean((0, 1)))
        return patch, offset, out_size / side

    def search_crop(self, rng, image, box, look_alike=None):
        """An augmented search patch z (255, with flip, blur, noise, translation) and its target offset in cells;
        ``look_alike``: a still object (trajectory) pasted beside the target first (``paste_look_alike``)."""
        z, offset, scale = self.crop(rng, image, box, INSTANCE)
        if look_alike is not None:
            z = paste_look_alike(rng, z, offset, scale, box, look_alike)
        if self.flip and rng.random() < 0.5:
            z, offset = z[:, ::-1], offset * [1, -1]
        return self.photometric(rng, z), offset / STRIDE

    def photometric(self, rng, patch):
        if self.blur and rng.random() < self.blur:
            patch = cv2.GaussianBlur(patch, (0, 0), rng.uniform(0.5, 1.5))
        if self.grayscale and rng.random() < self.grayscale:
            patch = np.repeat(cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        if self.color:
            gain = rng.uniform(1 - self.color, 1 + self.color, size=3)
            shift = rng.uniform(-40 * self.color, 40 * self.color)
            patch = np.clip(patch * gain + shift, 0, 255).astype(np.uint8)
        if self.noise:
            patch = np.clip(patch + rng.normal(0, self.noise, patch.shape), 0, 255).astype(np.uint8)
        return patch


def paste_look_alike(rng, z, offset, scale, box, other):
    """z with the still object ``other`` (a one-frame trajectory) pasted beside the target, at the target's
    size (+-20 %) and 1-2 target sizes away from it (a same-class look-alike that the features must tell
    apart; the label stays on the target). ``offset``, ``scale``: the target's place in z and z's scale, as ``CropSampler.crop`` gives."""
    ox, oy, ow, oh = other.boxes[0]
    patch = other.frame(0)[int(oy) : int(np.ceil(oy + oh)), int(ox) : int(np.ceil(ox + ow))]
    w, h = (int(max(round(v * scale * rng.uniform(0.8, 1.2)), 2)) for v in box[2:])
    size = z.shape[0]
    if patch.size == 0 or w >= size or h >= size:
        return z
    angle = rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(1.0, 2.0) * np.hypot(box[2], box[3]) * scale
    cy = (size - 1) / 2 + offset[0] + distance * np.sin(angle)
    cx = (size - 1) / 2 + offset[1] + distance * np.cos(angle)
    top, left = int(np.clip(cy - h / 2, 0, size - h)), int(np.clip(cx - w / 2, 0, size - w))
    z = z.copy()
    z[top : top + h, left : left + w] = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
    return z


def same_label_groups(sources) -> dict:
    """{label: still objects of that label}, for labels with at least two (each other's look-alikes)."""
    by_label = {}
    for source in sources:
        for traj in source.trajectories:
            if len(traj) == 1 and traj.label is not None:
                by_label.setdefault(traj.label, []).append(traj)
    return {label: group for label, group in by_label.items() if len(group) > 1}


def other_of(rng, group, traj):
    """A member of ``group`` other than ``traj`` (the group has at least two)."""
    other = group[rng.integers(len(group))]
    while other is traj:
        other = group[rng.integers(len(group))]
    return other


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
    (the anchor's frame among its context patches would make delta and eq. (7) trivial); for a
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


def pair_sampler():
    """The matching stage's augmentation: scale +-20 %, shift +-4 cells, colour, grayscale, blur,
    noise and flip, so that the network learns appearance changes instead of memorising its training frames."""
    return CropSampler(scale_jitter=0.2, shift_jitter=32.0, blur=0.2, noise=2.0, color=0.2, grayscale=0.1)


NO_TARGET = (1e3, 1e3)  # a target centre far outside any response map: every label is negative


class PairDataset(torch.utils.data.Dataset):
    """Item ``i``: batch ``i`` of (x, z, target offsets in cells, target sizes (h, w) in z's pixels) pairs.

    Most pairs are two frames of one trajectory. With probability ``negative`` z comes from another
    trajectory (no positive label anywhere); with probability ``distractor``, when the exemplar is a still
    image's object that shares its image with other objects, z is centred on one of those (the target is
    positive only where it falls inside the map), and when it is a labelled still object (Tiny ImageNet),
    another object of its class is pasted into z beside it (a look-alike, negative everywhere but on the
    target). Pairs from one still image (COCO) are made hard: z is
    rotated about the target, and with probability ``paste`` the target is pasted on another trajectory's
    background, then with probability ``occlude`` partly covered by a patch of that background.
    ``search_size``: the search crop's side (255 as in the paper; smaller crops train faster, the network
    is fully convolutional). ``hard=False`` gives plain positive pairs (validation). ``teacher``: a callable
    (x, z) -> (response map, search features) (teacher.py), joining each batch as ``teacher`` and
    ``teacher_features``. ``aspect``: z stretched about its centre by exp(+-a/2) in x and the inverse
    in y, a ~ U(-aspect, aspect), so that a target's aspect ratio changes between x and z (the box head's
    training; 0 for the matching stages).
    """

    def __init__(self, sources, iterations, batch_size=8, max_gap=100, seed=0, sampler=None, first_sample=0,
                 search_size=INSTANCE, hard=True, negative=0.1, distractor=0.3, paste=0.5, occlude=0.3, rotate=15.0,
                 teacher=None, aspect=0.0):
        self.mixture = _SourceMixture(sources)
        self.iterations = iterations
        self.batch_size = batch_size
        self.first_sample = first_sample  # this process's slice of the global batch (DDP)
        self.max_gap = max_gap
        self.seed = seed
        self.sampler = sampler or pair_sampler()
        self.search_size = search_size
        self.negative, self.distractor, self.paste, self.occlude, self.rotate = (
            (negative, distractor, paste, occlude, rotate) if hard else (0.0, 0.0, 0.0, 0.0, 0.0))
        self.trajectory_count = sum(len(source.trajectories) for source in sources if source.weight > 0)
        # Objects that share one still image: the distractors of each other.
        by_image = {}
        for source in sources:
            for traj in source.trajectories:
                if len(traj) == 1 and isinstance(traj.frames[0], (str, Path)):
                    by_image.setdefault(str(traj.frames[0]), []).append(traj)
        self.same_image = {path: group for path, group in by_image.items() if len(group) > 1}
        self.same_label = same_label_groups(sources)
        self.teacher = teacher
        self.aspect = aspect

    def __len__(self):
        return self.iterations

    def __getitem__(self, iteration):
        xs, zs, centers, sizes = [], [], [], []
        for k in range(self.first_sample, self.first_sample + self.batch_size):
            rng = np.random.default_rng([self.seed, iteration, k])
            x, z, center, size = self._pair(rng)
            if self.aspect:
                z, center, size = stretch(rng, z, center, size, self.aspect)
            if self.sampler.flip and rng.random() < 0.5:  # the same flip for both keeps them a pair
                x, z, center = x[:, ::-1], z[:, ::-1], center * [1, -1]
            xs.append(self.sampler.photometric(rng, x))
            zs.append(self.sampler.photometric(rng, z))
            centers.append(center)
            sizes.append(size)
        batch = {"x": _to_tensor(xs), "z": _to_tensor(zs), "centers": torch.tensor(np.array(centers), dtype=torch.float32),
                 "sizes": torch.tensor(np.array(sizes), dtype=torch.float32)}
        if self.teacher is not None:  # the teacher sees the crops exactly as the student does
            maps, features = zip(*(self.teacher(x, z) for x, z in zip(xs, zs)))
            batch["teacher"] = torch.from_numpy(np.stack(maps))
            batch["teacher_features"] = torch.from_numpy(np.stack(features))
        return batch

    def _pair(self, rng):
        """(x, z, target centre in z in cells (dy, dx), target size in z's pixels (h, w)) before flip and
        photometric changes."""
        traj = self.mixture.trajectory(rng)
        frames = _visible_frames(traj)
        i = rng.choice(frames)
        image_i = traj.frame(i)
        x, _, _ = self.sampler.crop(rng, image_i, traj.boxes[i], EXEMPLAR, shift=False)
        kind = rng.random()
        if kind < self.negative:
            other = self.mixture.trajectory(rng)
            while other is traj and self.trajectory_count > 1:  # another target, not this one
                other = self.mixture.trajectory(rng)
            f = rng.choice(_visible_frames(other))
            z, _, _ = self.sampler.crop(rng, other.frame(f), other.boxes[f], self.search_size)
            return x, z, np.array(NO_TARGET), np.ones(2)
        if len(frames) == 1:
            group = self.same_image.get(str(traj.frames[0]), [])
            if group and kind < self.negative + self.distractor:
                return x, *self._distractor_crop(rng, image_i, traj.boxes[i], group)
            look_alikes = self.same_label.get(traj.label, [])
            if look_alikes and kind < self.negative + self.distractor:
                return x, *self._look_alike_crop(rng, image_i, traj, look_alikes)
            return x, *self._hard_still_crop(rng, image_i, traj.boxes[i])
        j = rng.choice(frames[np.abs(frames - i) <= self.max_gap])
        z, offset, scale = self.sampler.crop(rng, image_i if j == i else traj.frame(j), traj.boxes[j], self.search_size)
        return x, z, offset / STRIDE, _size_in(traj.boxes[j], scale)

    def _distractor_crop(self, rng, image, box, group):
        """z centred on another object of the same image; the target is labelled where it lies."""
        others = [t for t in group if not np.array_equal(t.boxes[0], box)]
        other = others[rng.integers(len(others))].boxes[0]
        z, offset, scale = self.sampler.crop(rng, image, other, self.search_size)
        # The crop's centre in the image, then the target's position relative to it in crop pixels.
        cy, cx = other[1] + other[3] / 2 - offset[0] / scale, other[0] + other[2] / 2 - offset[1] / scale
        target = np.array([box[1] + box[3] / 2 - cy, box[0] + box[2] / 2 - cx]) * scale
        return z, target / STRIDE, _size_in(box, scale)

    def _look_alike_crop(self, rng, image, traj, group):
        """z of a still object with another object of its class pasted beside it (``paste_look_alike``)."""
        box = traj.boxes[0]
        z, offset, scale = self.sampler.crop(rng, image, box, self.search_size)
        return paste_look_alike(rng, z, offset, scale, box, other_of(rng, group, traj)), offset / STRIDE, _size_in(box, scale)

    def _hard_still_crop(self, rng, image, box):
        """z of a still image's object: rotated, pasted on another background, partly occluded."""
        z, offset, scale = self.sampler.crop(rng, image, box, self.search_size)
        size = self.search_size
        cy, cx = (size - 1) / 2 + offset[0], (size - 1) / 2 + offset[1]
        if self.rotate:
            matrix = cv2.getRotationMatrix2D((cx, cy), rng.uniform(-self.rotate, self.rotate), 1.0)
            z = cv2.warpAffine(z, matrix, (size, size), borderMode=cv2.BORDER_REFLECT)
        if rng.random() < self.paste:
            # Another trajectory's frame at the same scale, around a random point of it.
            other = self.mixture.trajectory(rng)
            frame = other.frame(rng.choice(_visible_frames(other)))
            point = rng.uniform(0, 1, size=2) * frame.shape[1::-1]
            background = crop_square(frame, point, size / scale, size, frame.mean((0, 1)))
            half_h, half_w = box[3] * scale / 2, box[2] * scale / 2
            top, bottom = int(max(cy - half_h, 0)), int(min(cy + half_h + 1, size))
            left, right = int(max(cx - half_w, 0)), int(min(cx + half_w + 1, size))
            pasted = background.copy()
            pasted[top:bottom, left:right] = z[top:bottom, left:right]
            if rng.random() < self.occlude and bottom - top > 4 and right - left > 4:
                # A background patch covering 20-50 % of the target's height and width.
                h, w = (int((bottom - top) * rng.uniform(0.2, 0.5)), int((right - left) * rng.uniform(0.2, 0.5)))
                r, c = rng.integers(top, bottom - h), rng.integers(left, right - w)
                sr, sc = rng.integers(0, size - h), rng.integers(0, size - w)
                pasted[r : r + h, c : c + w] = background[sr : sr + h, sc : sc + w]
            z = pasted
        return z, offset / STRIDE, _size_in(box, scale)


def _size_in(box, scale):
    """A box's (h, w) in a crop of ``scale`` crop pixels per image pixel."""
    return np.array([box[3], box[2]], dtype=np.float64) * scale


def stretch(rng, z, center, size, aspect):
    """z stretched about its centre by exp(a / 2) in x and exp(-a / 2) in y, a ~ U(-aspect, aspect), with the
    target's centre (cells, (dy, dx)) and size ((h, w) pixels) moved along."""
    a = rng.uniform(-aspect, aspect)
    factors = np.array([np.exp(-a / 2), np.exp(a / 2)])  # (y, x)
    middle = (z.shape[0] - 1) / 2
    matrix = np.array([[factors[1], 0, middle * (1 - factors[1])], [0, factors[0], middle * (1 - factors[0])]])
    z = cv2.warpAffine(z, matrix, z.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return z, center * factors, size * factors


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
            x, _, _ = self.sampler.crop(rng, traj.frame(i), traj.boxes[i], EXEMPLAR, shift=False)
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


def class_sampler():
    """The backbone stage's augmentation: scale +-30 %, shift +-3 cells, colour, grayscale, blur,
    noise and flip of the exemplar-scale crop, so that the features learn the object, not its framing."""
    return CropSampler(scale_jitter=0.3, shift_jitter=24.0, blur=0.3, noise=4.0, color=0.3, grayscale=0.1)


def class_index(sources) -> dict:
    """{label: index} over the labelled trajectories of ``sources``, sorted by label (stable across runs)."""
    labels = sorted({t.label for s in sources for t in s.trajectories if getattr(t, "label", None) is not None})
    if not labels:
        raise ValueError("the backbone stage classifies labelled images: give a labelled source "
                         "(e.g. --source tinyimagenet:ROOT)")
    return {label: k for k, label in enumerate(labels)}


class ClassificationDataset(torch.utils.data.Dataset):
    """Item ``i``: batch ``i`` of augmented exemplar-scale crops (127, SiamFC context, as the tracker's
    template) of labelled objects, with their class indices. Unlabelled trajectories are never drawn."""

    def __init__(self, sources, classes, iterations, batch_size=64, seed=0, sampler=None, first_sample=0):
        self.objects = [(t, classes[t.label]) for s in sources for t in s.trajectories
                        if getattr(t, "label", None) in classes]
        if not self.objects:
            raise ValueError("no labelled objects of the known classes in these sources")
        self.iterations, self.batch_size, self.first_sample = iterations, batch_size, first_sample
        self.seed = seed
        self.sampler = sampler or class_sampler()

    def __len__(self):
        return self.iterations

    def __getitem__(self, iteration):
        crops, labels = [], []
        for k in range(self.first_sample, self.first_sample + self.batch_size):
            rng = np.random.default_rng([self.seed, iteration, k])
            trajectory, label = self.objects[rng.integers(len(self.objects))]
            i = rng.choice(_visible_frames(trajectory))
            crop, _, _ = self.sampler.crop(rng, trajectory.frame(i), trajectory.boxes[i], EXEMPLAR)
            if self.sampler.flip and rng.random() < 0.5:
                crop = crop[:, ::-1]
            crops.append(self.sampler.photometric(rng, crop))
            labels.append(label)
        return {"x": _to_tensor(crops), "label": torch.tensor(labels, dtype=torch.long)}
