"""Result files of one (tracker, sequence, start) item: ``<result_dir>/<tracker>/<seq>[_<start>].txt`` (boxes,
comma separated, in the layout's own coordinates: 1-based for OTB-style layouts, as their toolkits expect; for
the restart protocol vot-toolkit's trajectory format) and ``times/<seq>[_<start>]_time.txt``. Times are
written first, boxes last and atomically: a boxes file marks the item as done, so a run resumes."""
from pathlib import Path

import numpy as np

from mlt_plugin import metrics
from mlt_plugin.evaluation.starts import start_label
from mlt_plugin.files import write_atomic, write_text_atomic


def result_files(result_dir, tracker, sequence_name, start=0):
    stem = f"{sequence_name}_{start_label(start)}" if start else sequence_name
    folder = Path(result_dir) / tracker
    return folder / f"{stem}.txt", folder / "times" / f"{stem}_time.txt"


def save_result(result_dir, tracker, sequence, start, boxes, seconds, states=None):
    """Write one item's files (``states``: the restart protocol's, else None); boxes 0-based."""
    box_file, time_file = result_files(result_dir, tracker, sequence.name, start)
    write_atomic(time_file, lambda tmp: np.savetxt(tmp, seconds, fmt="%.8f"))
    saved = boxes + [1, 1, 0, 0] if sequence.one_based else boxes
    if states is None:
        write_atomic(box_file, lambda tmp: np.savetxt(tmp, saved, fmt="%.3f", delimiter=","))
    else:
        write_text_atomic(box_file, trajectory_text(saved, states))


def trajectory_text(boxes, states) -> str:
    """A restart run in vot-toolkit's text trajectory format: ``x,y,w,h`` for a tracked frame, its code
    for an initialisation (1), a failure (2) or a skipped frame (0)."""
    return "".join((",".join(f"{v:.3f}" for v in box) if state == metrics.TRACKED else str(int(state))) + "\n"
                   for box, state in zip(boxes, states))


def read_trajectory(path):
    """Boxes (N, 4) and states (N,) of a trajectory file (``trajectory_text``); boxes NaN where none."""
    lines = Path(path).read_text().split()
    boxes, states = np.full((len(lines), 4), np.nan), np.full(len(lines), metrics.TRACKED, dtype=np.int8)
    for i, line in enumerate(lines):
        values = [float(v) for v in line.split(",")]
        if len(values) == 4:
            boxes[i] = values
        elif len(values) == 1 and values[0] in (metrics.SKIPPED, metrics.INITIALIZATION, metrics.FAILURE):
            states[i] = int(values[0])
        else:
            raise ValueError(f"{path}, line {i + 1}: expected x,y,w,h or a code 0/1/2, got {line!r}")
    return boxes, states


def load_result(result_dir, tracker, sequence, start=0, max_frames=None, protocol="one-pass"):
    """Saved (boxes, seconds) of one item, (boxes, seconds, states) for the restart protocol, or None when
    it has not run; boxes 0-based."""
    from mlt_plugin.sequences import read_boxes

    box_file, time_file = result_files(result_dir, tracker, sequence.name, start)
    if not box_file.is_file():
        return None
    if protocol == "restart":
        boxes, states = read_trajectory(box_file)
        boxes -= [1, 1, 0, 0] if sequence.one_based else 0
    else:
        boxes, states = read_boxes(box_file, one_based=sequence.one_based), None
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    if len(boxes) < count:
        raise ValueError(f"{box_file} has {len(boxes)} boxes for {count} frames: delete it to run the sequence again")
    seconds = np.loadtxt(time_file, ndmin=1).reshape(-1) if time_file.is_file() else np.full(count, np.nan)
    return (boxes[:count], seconds[:count]) if states is None else (boxes[:count], seconds[:count], states[:count])
