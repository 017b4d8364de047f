"""Still images with boxes in YOLO format (as COCO128): each object becomes a one-frame trajectory."""
from pathlib import Path

import numpy as np

from mlt_plugin.sequences import IMAGE_SUFFIXES, Sequence


def _image_size(path: Path):
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image.shape[1], image.shape[0]


def load_yolo_images(root, min_size: float = 16.0) -> list:
    """<root>/images/<split>/<id>.jpg + <root>/labels/<split>/<id>.txt ('class cx cy w h', normalised)."""
    root = Path(root)
    objects = []
    for label_file in sorted((root / "labels").rglob("*.txt")):
        rel = label_file.relative_to(root / "labels").with_suffix("")
        image = next((root / "images" / rel.with_suffix(s) for s in IMAGE_SUFFIXES if (root / "images" / rel.with_suffix(s)).is_file()), None)
        if image is None:
            continue
        lines = [line.split() for line in label_file.read_text().splitlines() if line.strip()]
        if not lines:
            continue
        width, height = _image_size(image)
        for k, values in enumerate(lines):
            cx, cy, w, h = (float(v) for v in values[1:5])
            box = np.array([[(cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height]])
            if min(box[0, 2:]) >= min_size:
                objects.append(Sequence(f"{rel}#{k}", [image], box))
    return objects
