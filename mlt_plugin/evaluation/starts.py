"""The runs of one sequence: start 0 is the exact first ground-truth box; starts 1..K-1 are OTB's spatial
robustness (SRE) perturbations of it, in the fixed order of ``SRE_STARTS`` (shifts of 10 % of the size,
scales 0.8/0.9/1.1/1.2 about the centre); temporal starts -1..-J (OTB's TRE) initialise on the ground truth
at a later frame (``TRE_STARTS``: half-way, a quarter, ...) and are scored from there."""
import numpy as np

from mlt_plugin import metrics

# OTB SRE: (dx, dy) centre shift in units of 10 % of (w, h), and a scale of the box about its centre.
# Order chosen so that any first K-1 mix shifts and scales in both directions.
SRE_STARTS = (
    ((-1, 0), 1.0), ((1, 0), 1.0), ((0, 0), 0.8), ((0, 0), 1.2), ((0, -1), 1.0), ((0, 1), 1.0),
    ((0, 0), 0.9), ((0, 0), 1.1), ((-1, -1), 1.0), ((1, -1), 1.0), ((-1, 1), 1.0), ((1, 1), 1.0),
)
MAX_STARTS = 1 + len(SRE_STARTS)
# OTB TRE: runs that start later in the sequence, at these fractions of its length, in an order whose
# first K spread over the sequence.
TRE_STARTS = (0.5, 0.25, 0.75, 0.125, 0.375, 0.625, 0.875)


def start_ids(starts=1, temporal_starts=0) -> list:
    """The runs of one sequence: 0 the exact first box, 1..starts-1 the SRE starts, -1..-temporal_starts the
    TRE starts (``first_frame``)."""
    if not 1 <= starts <= MAX_STARTS:
        raise ValueError(f"--starts must be 1..{MAX_STARTS} (the exact box + OTB's 12 SRE starts), got {starts}")
    if not 0 <= temporal_starts <= len(TRE_STARTS):
        raise ValueError(f"--temporal-starts must be 0..{len(TRE_STARTS)}, got {temporal_starts}")
    return list(range(starts)) + [-j for j in range(1, temporal_starts + 1)]


def first_frame(sequence, start: int, count: int) -> int:
    """The frame a run starts on: 0, or for a TRE start (-j) the first frame with a visible target from
    ``TRE_STARTS[j - 1]`` of the ``count`` frames on."""
    if start >= 0:
        return 0
    frame = int(TRE_STARTS[-start - 1] * count)
    visible = np.flatnonzero(sequence.visible[frame:count] & metrics.valid_ground_truth(sequence.boxes[frame:count]))
    return frame + int(visible[0]) if len(visible) else 0


def start_box(box, start: int) -> np.ndarray:
    """The initial box of start ``start`` (0 and TRE starts: as given; k >= 1: the k-th entry of ``SRE_STARTS``)."""
    box = np.asarray(box, dtype=np.float64)
    if start <= 0:
        return box.copy()
    (dx, dy), scale = SRE_STARTS[start - 1]
    cx, cy = box[0] + box[2] / 2 + 0.1 * dx * box[2], box[1] + box[3] / 2 + 0.1 * dy * box[3]
    w, h = box[2] * scale, box[3] * scale
    return np.array([cx - w / 2, cy - h / 2, w, h])


def start_label(start: int) -> str:
    """'' for start 0, 'start<k>' for an SRE start, 'tre<j>' for a TRE start (result file names, progress)."""
    return "" if start == 0 else f"start{start}" if start > 0 else f"tre{-start}"
