"""Store a weight file's int8 activation ranges beside it (NAME.int8.json), from training crops (issue 22).

    python tools/calibrate_int8.py mlt_plugin/weights/mlt.safetensors [--data ../shared/data] [--frames 4]

The ranges (networks/int8.py, networks/lite_openvino.py: activation_maxima) come from the tracker's search crops at its 3 scales
around the ground-truth box of ``--frames`` frames spread over every training trajectory of the data
folder (the validation split is never used). The weight file itself is not touched.
"""
import argparse
import copy

import numpy as np
import torch

from mlt_plugin.networks import lite_openvino
from mlt_plugin.networks.int8 import activation_maxima, calibration_path, write_calibration
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
    parser.add_argument("weights", help="a .safetensors file with a matching network")
    parser.add_argument("--data", help="data folder (default: $MLT_DATA or ../shared/data)")
    parser.add_argument("--frames", type=int, default=4, help="frames per training trajectory")
    args = parser.parse_args()
    net = load_matching(args.weights).eval()
    crops = training_crops(args.data, args.frames)
    if net.extractor == "lite":
        maxima = lite_openvino.activation_maxima(net.backbone, crops)
    else:
        maxima = activation_maxima(copy.deepcopy(net).fold_batch_norm(), crops)
    write_calibration(args.weights, net, maxima, len(crops))
    print(f"{calibration_path(args.weights)}: int8 ranges {[round(v, 4) for v in maxima.tolist()]} from {len(crops)} crops")


if __name__ == "__main__":
    main()
