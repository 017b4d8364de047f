#!/usr/bin/env python3
"""The memorising probe: how often a matching network's response peaks on the target, on
pairs from the videos it trained on and from the validation split it never saw. A growing gap between
the two is a network that learned its training videos rather than how to match.

A pair: an exemplar from frame i of a sequence, a search crop from frame j = i + 1..50 centred where the
target was in frame i (as a tracker searches), both at frame i's scale (SiamFC's 127 / 255 px crops). A
hit: the peak of the 17x17 response, upsampled 16x as the tracker does, within 20 px (search-crop pixels)
of the target's true centre. Same pairs (fixed seed) for every weight file.

    python tools/probe.py mlt_plugin/weights/lite_mt.safetensors runs/ft3/mlt_mt_best.safetensors [--pairs 400]
"""
import argparse

import numpy as np
import torch
import torch.nn.functional as F

from mlt_plugin.geometry import CONTEXT_AMOUNT, EXEMPLAR_SIZE, INSTANCE_SIZE, TOTAL_STRIDE
from mlt_plugin.networks.weights_io import load_matching
from mlt_plugin.sequences import load_sequences
from mlt_plugin.tracking.crops import context_size, crop_square
from mlt_plugin.training import split

UPSAMPLE, HIT_PX, MAX_GAP = 16, 20.0, 50


def training_videos():
    """The videos the shipped matching networks trained on (model card), never a validation sequence."""
    roots = [split.SHARED_DATA / root for root in split.TRAIN_ROOTS] + [split.TRAIN_DATA / "otb",
                                                                         split.TRAIN_LARGE / "DAVIS"]
    found = [s for root in roots if root.is_dir() for s in load_sequences(root)]
    return [s for s in found if not split.is_validation(s.name) and s.visible.sum() >= 2]


def sample_pairs(sequences, count, seed=0):
    """(sequence, i, j) with the target visible in both frames, sequences drawn uniformly."""
    rng, pairs = np.random.default_rng(seed), []
    while len(pairs) < count:
        seq = sequences[rng.integers(len(sequences))]
        visible = np.flatnonzero(seq.visible)
        i = int(rng.choice(visible[:-1]))
        later = visible[(visible > i) & (visible <= i + MAX_GAP)]
        if len(later):
            pairs.append((seq, i, int(rng.choice(later))))
    return pairs


def crops(pairs):
    """Exemplar and search crops (float tensors) and the true displacement of each pair in search-crop pixels."""
    exemplars, searches, shifts = [], [], []
    for seq, i, j in pairs:
        x, y, w, h = seq.boxes[i]
        center = np.array([x + w / 2, y + h / 2])
        side = context_size(w, h, CONTEXT_AMOUNT)
        first, second = seq.frame(i), seq.frame(j)
        pad = first.mean((0, 1))
        exemplars.append(crop_square(first, center, side, EXEMPLAR_SIZE, pad))
        searches.append(crop_square(second, center, side * INSTANCE_SIZE / EXEMPLAR_SIZE, INSTANCE_SIZE, pad))
        xj, yj, wj, hj = seq.boxes[j]
        shifts.append((np.array([xj + wj / 2, yj + hj / 2]) - center) * EXEMPLAR_SIZE / side)
    as_tensor = lambda images: torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()  # noqa: E731
    return as_tensor(exemplars), as_tensor(searches), np.array(shifts)


@torch.no_grad()
def hit_rate(net, data, batch=16):
    exemplars, searches, shifts = data
    errors = []
    for start in range(0, len(shifts), batch):
        response = net(exemplars[start:start + batch], searches[start:start + batch])
        up = F.interpolate(response.reshape(-1, 1, *response.shape[-2:]), scale_factor=UPSAMPLE, mode="bicubic", align_corners=False)[:, 0]
        side = up.shape[-1]
        peaks = up.flatten(1).argmax(1)
        peak = torch.stack([peaks % side, peaks // side], 1).numpy().astype(np.float64)
        found = (peak - (side - 1) / 2) * TOTAL_STRIDE / UPSAMPLE
        errors += list(np.linalg.norm(found - shifts[start:start + batch], axis=1))
    return float((np.array(errors) <= HIT_PX).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+", help="weight files holding a matching network")
    parser.add_argument("--pairs", type=int, default=400, help="pairs per set (default 400)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    sets = {"training videos": training_videos(), "validation split": split.validation_sequences()}
    data = {name: crops(sample_pairs(seqs, args.pairs)) for name, seqs in sets.items()}
    print(f"hit rate within {HIT_PX:.0f} px, {args.pairs} pairs per set "
          + ", ".join(f"{name}: {len(seqs)} sequences" for name, seqs in sets.items()))
    for path in args.weights:
        net = load_matching(path).eval()
        rates = {name: hit_rate(net, d) for name, d in data.items()}
        print(f"{path}: " + ", ".join(f"{name} {rate:.3f}" for name, rate in rates.items())
              + f", gap {rates['training videos'] - rates['validation split']:+.3f}")


if __name__ == "__main__":
    main()
