"""Sequences in the benchmarks' native layouts: frame paths plus 0-based [x, y, w, h] boxes.

Layouts (see ../shared/data/README.md for the conventions):
  OTB / DTB70   <seq>/img/*.jpg + groundtruth_rect[.N].txt            1-based x,y,w,h
  LaSOT         <seq>/img/*.jpg + groundtruth.txt (+ full_occlusion.txt, out_of_view.txt)   1-based
  GOT-10k       <seq>/*.jpg + groundtruth.txt (+ absence.label)       0-based
  VOT           <seq>/sequence + color/*.jpg + groundtruth.txt        0-based polygons or rectangles
  UAV123        <root>/data_seq/<subset>/<folder>/*.jpg + anno/<subset>/<name>.txt, with the frame ranges
                from the dataset's own configSeqs.m or a <subset>.json (got10k's schema)   1-based
  UAVDT         <root>/UAV-benchmark-S/<name>/img*.jpg + anno/<name>_gt.txt   1-based
VOT polygons become their axis-aligned bounding box (min/max of the corners). A benchmark root may
hold only some of its sequences: the absent ones are skipped.
``Sequence.fps`` is the source's frame rate where the layout states it (VOT ``sequence`` file,
UAV123 10/30 fps, a video's header), else None.

Broken data fails loudly, naming the file: a ground-truth file with fewer lines than frames (a
single line is allowed: first-frame-only annotation, as in the GOT-10k test split), a blank line
inside it, a gap or a duplicate in the frame numbering (found at load time, from the file names), and
a missing, empty, undecodable or truncated frame (found when ``Sequence.frame(i)`` reads it).
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass
class Sequence:
    name: str
    frames: list  # image paths (or in-memory RGB arrays for generated sequences)
    boxes: np.ndarray  # (N, 4) float [x, y, w, h], 0-based; NaN where not annotated
    visible: np.ndarray = field(default=None)  # (N,) bool: target visible and annotated
    fps: float = None  # the source's frame rate, where known
    one_based: bool = False  # the layout's own box files are 1-based (result files are written alike)
    label: str = None  # the object's class, where the layout has one (Tiny ImageNet): the backbone stage's target

    def __post_init__(self):
        if self.visible is None:
            self.visible = np.isfinite(self.boxes).all(1) & (self.boxes[:, 2:] > 0).all(1)

    def __len__(self):
        return len(self.frames)

    def frame(self, index: int) -> np.ndarray:
        item = self.frames[index]
        if isinstance(item, np.ndarray):
            return item
        try:
            return read_image(item)
        except ValueError as err:  # say which sequence and frame, not only which file
            raise type(err)(f"sequence {self.name}, frame {index}: {err}") from err


class FrameNotFoundError(FileNotFoundError, ValueError):
    """A frame file that does not exist; also a ValueError, like every other unreadable frame."""


def read_image(path) -> np.ndarray:
    """An image file as RGB uint8 HxWx3 (grayscale expanded); ValueError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FrameNotFoundError(f"frame {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"frame {path} is an empty (0-byte) file")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        # cv2 decodes a truncated JPEG without error (grey below the cut, a warning on stderr only):
        # a complete one ends with the end-of-image marker FFD9 (some writers pad a few bytes after it).
        with path.open("rb") as file:
            file.seek(max(path.stat().st_size - 1024, 0))
            if b"\xff\xd9" not in file.read():
                raise ValueError(f"frame {path} is a truncated JPEG (no end-of-image marker): re-extract or replace it")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"frame {path} is not a decodable image (corrupt, or not an image file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_boxes(path, one_based: bool) -> np.ndarray:
    """x,y,w,h or 8-value polygon per line (comma/tab/space separated) -> (N, 4) 0-based boxes."""
    rows = []
    text = Path(path).read_text().splitlines()
    while text and not text[-1].strip():  # trailing blank lines are harmless
        text.pop()
    for number, line in enumerate(text, 1):
        line = line.strip()
        if not line:  # skipping it would shift every later box to the wrong frame
            raise ValueError(f"{path}, line {number}: blank line inside the ground truth (one line per frame)")
        try:
            values = [float(v) for v in re.split(r"[,\s]+", line) if v]
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: cannot parse {line!r} as numbers") from err
        if len(values) == 4:
            rows.append(values)
        elif len(values) >= 6 and len(values) % 2 == 0:  # polygon: its bounding box
            xs, ys = values[0::2], values[1::2]
            rows.append([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)])
        elif len(values) == 1 and np.isnan(values[0]):  # VOT 0-frame marker / absent
            rows.append([np.nan] * 4)
        else:
            raise ValueError(f"{path}, line {number}: expected 4 values (x,y,w,h) or a polygon, got {line!r}")
    boxes = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    if one_based:
        boxes[:, :2] -= 1
    return boxes


def read_flags(path) -> np.ndarray:
    """A per-frame 0/1 label file (one value per line, or comma separated on one line)."""
    return np.array([int(float(v)) for v in re.split(r"[,\s]+", Path(path).read_text().strip()) if v], dtype=bool)


def _frame_number(path: Path):
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def _images_in(folder: Path) -> list:
    # Numeric order: "10.jpg" after "9.jpg" even without zero padding (same order as by name when padded).
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: (_frame_number(p) is None, _frame_number(p) or 0, p.name),
    )


def _check_numbering(name, frames):
    """A missing or doubled frame would silently pair every later frame with the wrong box."""
    numbers = [_frame_number(Path(f)) for f in frames]
    if len(frames) < 2 or None in numbers:
        return
    steps = np.diff(numbers)
    step = steps[steps > 0].min() if (steps > 0).any() else 1  # frames may be sampled every k-th
    for i in np.flatnonzero(steps != step):
        a, b = Path(frames[i]), Path(frames[i + 1])
        what = f"two frames numbered {numbers[i]}" if steps[i] == 0 else "frames are missing between them"
        raise ValueError(f"sequence {name}: {a} and {b}: {what} (frames in {a.parent} must be numbered without gaps)")


def _checked(name, frames, boxes, gt_path, visible=None) -> Sequence:
    if not frames:
        raise ValueError(f"sequence {name}: no frames found next to {gt_path}")
    _check_numbering(name, frames)
    if len(boxes) == 1 and len(frames) > 1:  # first-frame-only annotation (GOT-10k test split)
        boxes = np.concatenate([boxes, np.full((len(frames) - 1, 4), np.nan)])
    if len(boxes) < len(frames):
        raise ValueError(
            f"{gt_path} has {len(boxes)} boxes for {len(frames)} frames: "
            f"line {len(boxes) + 1} (for frame {frames[len(boxes)]}) is missing"
        )
    boxes = boxes[: len(frames)]
    return Sequence(name, frames, boxes, visible)


def _otb_targets(folder: Path) -> list:
    gts = sorted(folder.glob("groundtruth_rect*.txt"))
    frames = _images_in(folder / "img")
    many = len(gts) > 1
    return [
        _one_based(_checked(f"{folder.name}.{gt.stem.split('.')[-1]}" if many else folder.name, frames,
                            read_boxes(gt, True), gt))
        for gt in gts
    ]


def _one_based(seq: Sequence) -> Sequence:
    seq.one_based = True
    return seq


def _lasot_or_got(folder: Path, lasot: bool) -> Sequence:
    gt = folder / "groundtruth.txt"
    frames = _images_in(folder / "img") if lasot else _images_in(folder)
    seq = _checked(folder.name, frames, read_boxes(gt, one_based=lasot), gt)
    hidden_files = ("full_occlusion.txt", "out_of_view.txt") if lasot else ("absence.label",)
    hidden = np.zeros(len(seq), dtype=bool)
    for name in hidden_files:
        if (folder / name).is_file():
            flags = read_flags(folder / name)
            hidden[: len(flags)] |= flags[: len(hidden)]
    cover = folder / "cover.label"  # GOT-10k: visible share of the target in 0..8, 0 = fully occluded
    if not lasot and cover.is_file():
        values = np.array([int(float(v)) for v in re.split(r"[,\s]+", cover.read_text().strip()) if v])
        hidden[: len(values)] |= values[: len(hidden)] == 0
    seq.visible = seq.visible & ~hidden
    seq.one_based = lasot
    return seq


def _vot(folder: Path) -> Sequence:
    pattern = "color/%08d.jpg"
    meta = folder / "sequence"
    if meta.is_file():
        for line in meta.read_text().splitlines():
            if line.startswith("channels.color="):
                pattern = line.split("=", 1)[1].strip()
    gt = folder / "groundtruth.txt"
    boxes = read_boxes(gt, one_based=False)
    image_dir = (folder / pattern).parent
    frames = _images_in(image_dir) if image_dir.is_dir() else []
    seq = _checked(folder.name, frames, boxes, gt)
    fps = re.search(r"^fps\s*=\s*([\d.]+)", meta.read_text(), re.M) if meta.is_file() else None
    seq.fps = float(fps.group(1)) if fps else None
    return seq


def _uavdt(folder: Path) -> Sequence:
    gt = folder.parent.parent / "anno" / f"{folder.name}_gt.txt"
    return _one_based(_checked(folder.name, _images_in(folder), read_boxes(gt, True), gt))


_CONFIG_ENTRY = re.compile(
    r"'name'\s*,\s*'([^']+)'\s*,\s*'path'\s*,\s*'([^']*)'\s*,\s*'startFrame'\s*,\s*(\d+)\s*,\s*'endFrame'\s*,\s*(\d+)")


def uav123_ranges(root: Path) -> dict:
    """{name: (subset, frame folder, start, end)} from ``configSeqs.m`` (UAV123's own) or ``UAV*.json``."""
    ranges = {}
    for config in sorted(root.glob("configSeqs*.m")):
        # Blocks like: seqUAV123_10fps={struct('name','bike1','path','...\data_seq\UAV123_10fps\bike1\',
        # 'startFrame',1,'endFrame',1029,...),...}
        for block in re.finditer(r"seq(\w+)\s*=\s*\{(.*?)\}\s*;", config.read_text(errors="replace"), re.S):
            for name, path, start, end in _CONFIG_ENTRY.findall(block.group(2)):
                parts = [s for s in re.split(r"[\\/]", path) if s and s != "."]
                folder = root / "data_seq" / "/".join(parts[-2:]) if len(parts) >= 2 else None
                if folder is None or not folder.is_dir():  # a path from the authors' machine: use the layout
                    folder = root / "data_seq" / block.group(1) / (parts[-1] if parts else name)
                ranges[name] = (block.group(1), folder, int(start), int(end))
    for meta_file in sorted(root.glob("UAV*.json")):
        for subset, entries in json.loads(meta_file.read_text()).items():
            for name, info in entries.items():
                folder = root / "data_seq" / subset / info["folder_name"]
                ranges.setdefault(name, (subset, folder, int(info["start_frame"]), int(info["end_frame"])))
    return ranges


def _uav123_root(root: Path) -> list:
    sequences = []
    for name, (subset, folder, start, end) in sorted(uav123_ranges(root).items()):
        gt = root / "anno" / subset / f"{name}.txt"
        if not gt.is_file() and not folder.is_dir():
            continue  # a root holding only some sequences of the benchmark
        if not gt.is_file():
            raise FileNotFoundError(f"sequence {name}: frames in {folder} but no ground truth {gt}")
        frames = [p for p in _images_in(folder) if start <= (_frame_number(p) or 0) <= end] if folder.is_dir() else []
        if len(frames) != end - start + 1:  # a missing first/last frame leaves no gap to see
            raise ValueError(
                f"sequence {name}: {folder} has {len(frames)} frames numbered {start}-{end}, "
                f"expected {end - start + 1} (missing frame files)"
            )
        seq = _checked(name, frames, read_boxes(gt, True), gt)
        seq.fps, seq.one_based = (10.0 if "10fps" in subset else 30.0), True
        sequences.append(seq)
    return sequences


def mask_box(mask_path: Path) -> np.ndarray:
    """[x, y, w, h] of a mask's non-zero pixels (0-based, pixel extent), NaN for an empty mask."""
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ValueError(f"cannot read mask {mask_path}")
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not len(rows):
        return np.full(4, np.nan)
    return np.array([cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], dtype=np.float64)


def _davis(root: Path, name: str) -> Sequence:
    """DAVIS 2016: JPEGImages/480p/<name>/NNNNN.jpg, one object's mask per frame in Annotations/480p/<name>/
    NNNNN.png; the box is the mask's extent, an empty mask an absent target."""
    folder = root / "JPEGImages" / "480p" / name
    frames = _images_in(folder)
    masks = root / "Annotations" / "480p" / name
    missing = [f for f in frames if not (masks / f"{Path(f).stem}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"DAVIS sequence {name}: no mask {masks / (missing[0].stem + '.png')} for frame {missing[0]}")
    # A mask whose frame is missing (e.g. the last one, which leaves no numbering gap) would drop silently.
    stems = {Path(f).stem for f in frames}
    orphans = sorted(m for m in masks.glob("*.png") if m.stem not in stems)
    if orphans:
        raise FileNotFoundError(f"DAVIS sequence {name}: no frame {folder / orphans[0].stem}.jpg for mask {orphans[0]}")
    boxes = np.stack([mask_box(masks / f"{Path(f).stem}.png") for f in frames]) if frames else np.zeros((0, 4))
    return _checked(name, frames, boxes, masks)


def is_davis_root(path: Path) -> bool:
    return (path / "JPEGImages" / "480p").is_dir() and (path / "Annotations" / "480p").is_dir()


def is_uav123_root(path: Path) -> bool:
    return (path / "data_seq").is_dir() and (path / "anno").is_dir() and bool(
        list(path.glob("UAV*.json")) or list(path.glob("configSeqs*.m")))


def _targets_in_folder(folder: Path) -> list:
    """All targets of one sequence folder, or [] if the folder is no sequence."""
    if list(folder.glob("groundtruth_rect*.txt")) and (folder / "img").is_dir():
        return _otb_targets(folder)
    if (folder / "groundtruth.txt").is_file():
        if (folder / "sequence").is_file() or (folder / "color").is_dir():
            return [_vot(folder)]
        return [_lasot_or_got(folder, lasot=(folder / "img").is_dir())]
    if folder.parent.name == "UAV-benchmark-S":
        return [_uavdt(folder)]
    return []


def load_sequences(path, max_depth: int = 3) -> list:
    """Every target sequence found at ``path``: one sequence folder, or a benchmark root searched to ``max_depth``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such sequence or dataset folder: {path}")
    if path.is_file():
        raise ValueError(f"{path} is a file; expected a sequence folder or a benchmark root (videos: use load_video)")
    if is_uav123_root(path):
        return _uav123_root(path)
    if is_davis_root(path):
        return [_davis(path, d.name) for d in sorted((path / "JPEGImages" / "480p").iterdir()) if d.is_dir()]
    found = _targets_in_folder(path)
    if found or max_depth == 0:
        return found
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        found.extend(load_sequences(child, max_depth - 1))
    return found


def load_sequence(path) -> Sequence:
    """One sequence folder (the first target where a folder has several), or the first sequence of a
    UAV123 root or of one of its frame folders (``data_seq/<subset>/<folder>``)."""
    path = Path(path)
    found = _targets_in_folder(path) if path.is_dir() else []
    if not found and path.is_dir() and is_uav123_root(path):
        found = _uav123_root(path)
    if not found and path.is_dir() and path.parent.parent.name == "data_seq" and is_uav123_root(path.parents[2]):
        found = [s for s in _uav123_root(path.parents[2]) if Path(s.frames[0]).parent.resolve() == path.resolve()]
    if not found and path.is_dir() and is_davis_root(path):
        found = load_sequences(path)
    if not found and path.is_dir() and path.parent.name == "480p" and is_davis_root(path.parents[2]):
        found = [_davis(path.parents[2], path.name)]
    if not found:
        raise ValueError(
            f"{path} is not a sequence folder in a known layout (OTB, VOT, LaSOT, GOT-10k, UAV123, UAVDT, DAVIS): "
            "expected img/ + groundtruth_rect.txt, groundtruth.txt + frames, or a VOT 'sequence' file"
        )
    return found[0]


def load_video(path) -> Sequence:
    """A video file as a sequence of in-memory RGB frames, with no ground truth."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise ValueError(f"cannot read any frame from video {path}")
    return Sequence(Path(path).stem, frames, np.full((len(frames), 4), np.nan), fps=fps)

