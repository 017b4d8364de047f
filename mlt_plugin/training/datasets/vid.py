"""ILSVRC VID (2015, and 2017 with the same layout): one trajectory per object track of a snippet.

Layout:
  <root>/Data/VID/{train,val}/[ILSVRC2015_VID_train_000N/]<snippet>/000000.JPEG, ...
  <root>/Annotations/VID/{train,val}/[ILSVRC2015_VID_train_000N/]<snippet>/000000.xml, ...
Each xml lists the frame's objects: <trackid>, <bndbox> xmin/ymin/xmax/ymax (pixel corners, taken as
0-based continuous coordinates: x = xmin, w = xmax - xmin, as SiamFC's curation does), <occluded>.
A track's frames where it is absent or marked occluded are not visible (never sampled).
"""
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mlt_plugin.sequences import Sequence


def _annotation_root(root: Path):
    """(frames folder, annotations folder) for the ILSVRC folder itself or any folder under Data/VID."""
    if (root / "Data" / "VID").is_dir():
        return root / "Data" / "VID", root / "Annotations" / "VID"
    parts = root.resolve().parts
    if "Data" in parts:
        i = len(parts) - 1 - parts[::-1].index("Data")
        return root, Path(*parts[:i], "Annotations", *parts[i + 1 :])
    raise ValueError(f"{root} is not an ILSVRC VID folder: expected Data/VID inside it, or a folder under Data/VID")


def _read_objects(xml_file: Path):
    """{trackid: ([x, y, w, h], occluded)} of one annotation file."""
    try:
        tree = ET.parse(xml_file)
    except ET.ParseError as err:
        raise ValueError(f"cannot parse VID annotation {xml_file}: {err}") from err
    objects = {}
    for obj in tree.getroot().iter("object"):
        try:
            box = obj.find("bndbox")
            x0, y0, x1, y1 = (float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            occluded = obj.findtext("occluded", "0").strip() == "1"
            objects[obj.findtext("trackid").strip()] = ([x0, y0, x1 - x0, y1 - y0], occluded)
        except (AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"VID annotation {xml_file}: an <object> lacks trackid or bndbox values") from err
    return objects


def load_snippet(frames_dir: Path, annotations_dir: Path) -> list:
    """The trajectories (one per trackid) of one snippet."""
    frames = sorted(frames_dir.glob("*.JPEG")) or sorted(frames_dir.glob("*.jpg"))
    if not frames:
        raise ValueError(f"VID snippet {frames_dir} has no frames")
    per_frame = []
    for frame in frames:
        xml_file = annotations_dir / f"{frame.stem}.xml"
        if not xml_file.is_file():
            raise FileNotFoundError(f"VID annotation {xml_file} (for frame {frame}) does not exist")
        per_frame.append(_read_objects(xml_file))
    trajectories = []
    for trackid in sorted({t for objects in per_frame for t in objects}, key=int):
        boxes = np.full((len(frames), 4), np.nan)
        visible = np.zeros(len(frames), dtype=bool)
        for n, objects in enumerate(per_frame):
            if trackid in objects:
                box, occluded = objects[trackid]
                boxes[n] = box
                visible[n] = not occluded and box[2] > 0 and box[3] > 0
        trajectories.append(Sequence(f"{frames_dir.name}#{trackid}", list(frames), boxes, visible))
    return trajectories


def load_vid(root, exclude=()) -> list:
    """Every object trajectory under ``root``: the ILSVRC folder (all annotated subsets) or a folder under
    Data/VID (e.g. ``ILSVRC2015/Data/VID/val`` for the paper's meta-learner set)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such ILSVRC VID folder: {root}")
    data_dir, annotation_dir = _annotation_root(root)
    if not annotation_dir.is_dir():
        raise FileNotFoundError(f"ILSVRC VID annotations {annotation_dir} (for frames {data_dir}) do not exist")
    # Snippets are the annotation folders that hold xml files (the train batches nest one level deeper).
    snippets = sorted({xml.parent for xml in annotation_dir.rglob("*.xml")})
    trajectories = []
    for snippet in tqdm(snippets, desc=f"reading VID {root}", unit="snippet", disable=len(snippets) < 100):
        frames_dir = data_dir / snippet.relative_to(annotation_dir)
        if not frames_dir.is_dir():
            raise FileNotFoundError(f"VID frames folder {frames_dir} (for annotations {snippet}) does not exist")
        trajectories.extend(t for t in load_snippet(frames_dir, snippet) if t.name not in exclude)
    return trajectories
