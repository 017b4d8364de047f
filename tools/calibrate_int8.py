"""Store a weight file's int8 activation ranges beside it (NAME.int8.json), from training crops.

    python tools/calibrate_int8.py [WEIGHTS ...] [--data ../shared/data] [--frames 4]

Without WEIGHTS: every shipped weight file of every extractor in the registry (extractors.EXTRACTORS).
The ranges (the extractor's ``int8_activation_maxima``) come from the tracker's search crops at its 3 scales
around the ground-truth box of ``--frames`` frames spread over every training trajectory of the data
folder (the validation split is never used). The weight file itself is not touched.
"""
import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from mlt_plugin.networks.extractors import EXTRACTORS
from mlt_plugin.networks.int8 import calibration_path, write_calibration
from mlt_plugin.networks.weights_io import load_matching
from mlt_plugin.params import load_parameters
from mlt_plugin.sequences import load_sequences
from mlt_plugin.tracking.crops import context_size, crop_square
from mlt_plugin.training import split


def training_crops(data, frames_per_trajectory):
    p = load_parameters("default")
    crops = []
    for root in split.TRAIN_ROOTS:
        for sequence in load_sequences(split.data_dir(data) / root):
            if split.is_validation(sequence.name):
                continue
            visible = np.flatnonzero(sequence.visible)
            for index in visible[np.linspace(0, len(visible) - 1, frames_per_trajectory).round().astype(int)]:
                image = sequence.frame(index)
                x, y, w, h = sequence.boxes[index]
                side = context_size(w, h, p.context_amount) * p.instance_size / p.exemplar_size
                for scale in p.scales:
                    crops.append(crop_square(image, (x + w / 2, y + h / 2), side * scale, p.instance_size,
                                             image.mean((0, 1))))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="*", help=".safetensors files with a matching network (default: the shipped ones)")
    parser.add_argument("--data", help="data folder (default: $MLT_DATA or ../shared/data)")
    parser.add_argument("--frames", type=int, default=4, help="frames per training trajectory")
    args = parser.parse_args()
    files = args.weights or [extractor.default_files[variant] for extractor in EXTRACTORS.values()
                             for variant in ("mlt", "mt") if Path(extractor.default_files.get(variant, "")).is_file()]
    crops = training_crops(args.data, args.frames)
    for path in files:
        net = load_matching(path).eval()
        folded = copy.deepcopy(net).fold_batch_norm()  # the network the tracker runs
        maxima = folded.backbone.int8_activation_maxima(folded, crops)
        write_calibration(path, net, maxima, len(crops))  # its digest is of the weights as stored
        print(f"{calibration_path(path)}: int8 ranges {[round(v, 4) for v in maxima.tolist()]} from {len(crops)} crops")


if __name__ == "__main__":
    main()
