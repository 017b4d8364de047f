"""Input checks at the tracker's edge: images become RGB uint8 HxWx3, boxes finite [x, y, w, h]."""
import numpy as np


def prepare_image(image) -> np.ndarray:
    """RGB uint8 HxWx3 from HxW / HxWx1 (grey, expanded), HxWx3, HxWx4 (alpha dropped).

    Values: uint8 is taken as is; uint16 is scaled by 1/257 to 0-255; float images are taken as 0-1
    when their maximum is at most 1, else as 0-255, and clipped (NaN/inf raise); bool is False -> 0,
    True -> 255 (PIL mode '1' images arrive as bool); other integer types are taken as 0-255 and
    clipped. Object, complex, string dtypes, empty images and other shapes raise ValueError.
    Any memory layout is accepted (views like ``image[:, ::-1]`` or a BGR->RGB ``[..., ::-1]`` slice);
    the result is always a C-contiguous array, which cv2 needs.
    """
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)  # PIL images and array-likes
        except Exception as err:  # noqa: BLE001 - any conversion failure is a bad input
            raise ValueError(f"image must be a numpy array, got a {type(image).__name__} numpy cannot convert") from err
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    image = image[:, :, :3]
    if image.dtype == np.uint8:
        pass
    elif image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif image.dtype.kind == "f":
        if not np.isfinite(image).all():
            raise ValueError("image contains NaN or infinite values")
        peak = float(image.max())
        image = np.clip(image * 255.0 if peak <= 1.0 else image, 0, 255).round().astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255  # a binary image, not 0/1 intensities (which would be black)
    elif image.dtype.kind in "iu":
        image = np.clip(image, 0, 255).astype(np.uint8)
    else:
        raise ValueError(f"unsupported image dtype {image.dtype}: use uint8 (0-255), uint16 or float")
    return np.ascontiguousarray(image)


def parse_box(box) -> np.ndarray:
    """[x, y, w, h] (0-based top-left) or a pytracking info dict with 'init_bbox' -> float64 array."""
    if isinstance(box, dict):
        if "init_bbox" not in box:
            raise ValueError(f"info dict has no 'init_bbox' key (keys: {sorted(box)})")
        box = box["init_bbox"]
    try:
        values = np.asarray(box, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"box must be 4 numbers [x, y, w, h], got {box!r}") from err
    if values.size != 4:
        raise ValueError(f"box must be 4 numbers [x, y, w, h], got {values.size} values: {box!r}")
    if not np.isfinite(values).all():
        raise ValueError(f"box has a NaN or infinite value: {values.tolist()}")
    if values[2] <= 0 or values[3] <= 0:
        raise ValueError(f"box width and height must be > 0, got w={values[2]}, h={values[3]}")
    return values
