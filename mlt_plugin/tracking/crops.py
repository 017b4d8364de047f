"""Square crops around a centre, resized with one cv2.warpAffine and padded with the mean colour."""
import cv2
import numpy as np


def crop_square(image: np.ndarray, center, side: float, out_size: int, pad_color) -> np.ndarray:
    """The square of ``side`` pixels centred at ``center`` (x, y), resized to ``out_size``.

    Coordinates are continuous: pixel i covers [i, i + 1). Outside the image: ``pad_color``.
    """
    scale = out_size / side
    # Inverse map from crop pixel j to image pixel u: u = j / scale + (c - side / 2 + 0.5 / scale - 0.5).
    tx = center[0] - side / 2 + 0.5 / scale - 0.5
    ty = center[1] - side / 2 + 0.5 / scale - 0.5
    matrix = np.array([[1 / scale, 0, tx], [0, 1 / scale, ty]], dtype=np.float64)
    return cv2.warpAffine(
        image,
        matrix,
        (out_size, out_size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(float(c) for c in pad_color),
    )


def context_size(width, height, context_amount: float):
    """SiamFC's exemplar side in image pixels: sqrt((w + p)(h + p)), p = context_amount * (w + h); elementwise
    for arrays of widths and heights."""
    pad = context_amount * (width + height)
    return np.sqrt((width + pad) * (height + pad))
