"""A built-in demo sequence, generated (no data needed): a textured target moving and changing scale
over a cluttered background that also holds look-alike distractors, with exact ground truth."""
from pathlib import Path

import cv2
import numpy as np

from mlt_plugin.sequences import VIDEO_SUFFIXES, Sequence, load_sequence, load_video


def _texture(rng, height, width, cell):
    """A random colour blob texture: smooth noise in three channels, blobs about ``cell`` pixels wide."""
    small = rng.integers(0, 256, size=(max(2, height // cell), max(2, width // cell), 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def load_target(path=None) -> Sequence:
    """What `mlt track` / `mlt bench` take: a sequence folder, a UAV123 root or frame folder, a video
    file, or None for this module's generated demo sequence."""
    if path is None:
        return demo_sequence()
    if not Path(path).exists():
        raise FileNotFoundError(f"no such sequence folder or video: {path}")
    if Path(path).is_file() and Path(path).suffix.lower() in VIDEO_SUFFIXES:
        return load_video(path)
    return load_sequence(path)


def demo_sequence(num_frames: int = 150, width: int = 480, height: int = 360, seed: int = 7) -> Sequence:
    rng = np.random.default_rng(seed)
    background = (_texture(rng, height, width, 48) // 2 + 64).astype(np.uint8)  # muted, low frequency
    for _ in range(60):  # clutter: random rectangles and circles
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.rectangle(background, (x, y), (x + int(rng.integers(5, 40)), y + int(rng.integers(5, 40))), colour, -1)
        else:
            cv2.circle(background, (x, y), int(rng.integers(3, 20)), colour, -1)
    target = _texture(rng, 48, 40, 8)
    cv2.rectangle(target, (0, 0), (39, 47), (255, 255, 255), 2)
    distractor = cv2.GaussianBlur(target, (0, 0), 2)[:, ::-1].copy()  # a similar-looking object

    frames, boxes = [], []
    for t in range(num_frames):
        phase = 2 * np.pi * t / num_frames
        scale = 1.0 + 0.3 * np.sin(2 * phase)
        w, h = 40 * scale, 48 * scale
        cx = width / 2 + 0.33 * width * np.sin(phase)
        cy = height / 2 + 0.25 * height * np.sin(2 * phase + 0.5)
        frame = background.copy()
        _paste(frame, distractor, width - cx, height - cy, 40, 48)  # the distractor mirrors the target's path
        box = _paste(frame, target, cx, cy, w, h)
        noise = rng.normal(0, 4, frame.shape)
        frames.append(np.clip(frame + noise, 0, 255).astype(np.uint8))
        boxes.append(box)
    return Sequence("demo", frames, np.asarray(boxes))


def _paste(frame, patch, cx, cy, w, h):
    """Draw ``patch`` resized to w x h centred at (cx, cy), clipped to the frame; returns its exact box."""
    w, h = int(round(w)), int(round(h))
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    resized = cv2.resize(patch, (w, h), interpolation=cv2.INTER_LINEAR)
    fx0, fy0 = max(x0, 0), max(y0, 0)
    fx1, fy1 = min(x0 + w, frame.shape[1]), min(y0 + h, frame.shape[0])
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = resized[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
    return [x0, y0, w, h]


def write_square_sequence(root, name="square", frames=8, size=(160, 120), seed=0) -> Path:
    """An OTB-layout sequence under ``root``: a bright 40x30 square moving over noise, 1-based ground truth
    (small generated training and check data); returns ``root``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / name
    (folder / "img").mkdir(parents=True, exist_ok=True)
    width, height = size
    boxes = []
    for n in range(frames):
        image = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
        x, y = 40 + (4 * n) % (width - 80), 30 + (2 * n) % (height - 60)
        image[y : y + 30, x : x + 40] = (230, 200, 60)
        cv2.imwrite(str(folder / "img" / f"{n + 1:04d}.jpg"), image)
        boxes.append([x + 1, y + 1, 40, 30])
    (folder / "groundtruth_rect.txt").write_text("".join(",".join(map(str, b)) + "\n" for b in boxes))
    return Path(root)
