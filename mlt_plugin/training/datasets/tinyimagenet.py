"""Tiny ImageNet-200 in its native layout: one still object with a class label per image.

    ROOT/train/<wnid>/images/<wnid>_<k>.JPEG  +  ROOT/train/<wnid>/<wnid>_boxes.txt   (file x0 y0 x1 y1)
    ROOT/val/images/val_<k>.JPEG               +  ROOT/val/val_annotations.txt         (file wnid x0 y0 x1 y1)

Corners are 0-based and inclusive: the box is [x0, y0, x1 - x0 + 1, y1 - y0 + 1]. ROOT may be the
tiny-imagenet-200 folder (its train part), or its train/ or val/ folder. Images are not opened here
(110,000 of them; all 64x64 px in the dataset): a box is checked against the image only when it is
cropped. Each annotated file must exist (one directory listing per images/ folder). A class folder
without a boxes file (two of the 202 in the pinned copy: images, but no boxes) is skipped.
"""
import os
from pathlib import Path

import numpy as np

from mlt_plugin.sequences import Sequence


def _listing(folder):
    """The file names in an images/ folder: one listing instead of 100,000 stat calls."""
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} does not exist: Tiny ImageNet keeps the images of "
                                f"{folder.parent} there") from None


def _object(image, label, corners, where, present):
    if image.name not in present:
        raise FileNotFoundError(f"{where}: image {image} does not exist")
    try:
        x0, y0, x1, y1 = (float(v) for v in corners)
    except ValueError as err:
        raise ValueError(f"{where}: expected 4 box corners x0 y0 x1 y1, got {corners}") from err
    return Sequence(f"{label}/{image.name}", [image], np.array([[x0, y0, x1 - x0 + 1, y1 - y0 + 1]]), label=label)


def _rows(path, columns):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            row = line.split()
            if len(row) != columns:
                raise ValueError(f"{path}, line {number}: expected {columns} tab-separated fields, got {len(row)}")
            yield f"{path}, line {number}", row


def load_tiny_imagenet(root, min_size: float = 16.0) -> list:
    """The labelled objects of a Tiny ImageNet train or val folder whose boxes are at least ``min_size``
    px on both sides (smaller ones would be upsampled 10x and more into the exemplar crop)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such Tiny ImageNet folder: {root}")
    if (root / "train").is_dir() and not (root / "val_annotations.txt").is_file():
        root = root / "train"
    objects = []
    if (root / "val_annotations.txt").is_file():
        present = _listing(root / "images")
        for where, (name, wnid, *corners) in _rows(root / "val_annotations.txt", 6):
            objects.append(_object(root / "images" / name, wnid, corners, where, present))
    else:
        box_files = sorted(root.glob("*/*_boxes.txt"))
        if not box_files:
            raise ValueError(f"{root} is not a Tiny ImageNet folder: expected val_annotations.txt, or "
                             "<wnid>/<wnid>_boxes.txt class folders (in it or in its train/)")
        for box_file in box_files:
            wnid, present = box_file.parent.name, _listing(box_file.parent / "images")
            for where, (name, *corners) in _rows(box_file, 5):
                objects.append(_object(box_file.parent / "images" / name, wnid, corners, where, present))
    return [o for o in objects if min(o.boxes[0, 2:]) >= min_size]
