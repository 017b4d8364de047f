"""One-pass evaluation (OPE) metrics shared by `mlt eval` and the benchmark wrappers.

Boxes are [x, y, w, h] arrays of shape (N, 4) (or (4,)), in one coordinate frame (0- or 1-based
does not matter as long as prediction and ground truth agree). Conventions follow the OTB / LaSOT
toolkits, which got10k 0.1.3 reproduces:

- IoU in continuous coordinates: intersection of [x, x + w) x [y, y + h); 0 when a box is empty.
- Success curve: fraction of frames whose IoU is *greater than* each threshold of 0, 0.05, ..., 1
  (21 thresholds).
- Success AUC: the **mean of the success curve over those 21 thresholds**. This is the number the
  OTB and LaSOT toolkits (and pytracking) print as "AUC", and it is got10k's ``success_score`` when
  the experiment uses ``nbins_iou=21`` (got10k's own default for ExperimentOTB). It is not the
  trapezoidal area and not the average overlap: as the number of thresholds grows, the mean of the
  curve tends to the average overlap (``average_overlap``, GOT-10k's AO); with 21 thresholds the two
  differ by up to ~0.05.
- Precision curve: fraction of frames whose centre error is *at most* each threshold of 0..50 px;
  precision@20 is its value at 20 px.
- Normalised precision (LaSOT): centre error measured in units of the ground-truth box size,
  ||(c_pred - c_gt) / (w_gt, h_gt)||; the curve over thresholds 0, 0.01, ..., 0.5 and its mean
  (the "AUC between 0 and 0.5" of the LaSOT paper, as pytracking computes it).
- Frames without a valid ground truth (NaN, w <= 0 or h <= 0, or marked absent) count as failures
  at every threshold and stay in the denominator, as in the official LaSOT toolkit; pass
  ``valid`` to choose them.
"""
import numpy as np

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)  # 0, 0.05, ..., 1
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)  # 0..50 px
NORMALIZED_PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64) / 100  # 0..0.5
IOU_THRESHOLDS, PIXEL_THRESHOLDS = SUCCESS_THRESHOLDS, PRECISION_THRESHOLDS  # aliases


def _boxes(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have 4 values [x, y, w, h] in the last axis, got shape {boxes.shape}")
    return boxes


def _pair(a, b):
    a, b = _boxes(a), _boxes(b)
    if a.shape != b.shape:
        raise ValueError(f"box arrays differ in shape: {a.shape} vs {b.shape}")
    return a, b


def iou(a, b) -> np.ndarray:
    """Intersection over union of matching rows of ``a`` and ``b`` (NaN where a box has a NaN)."""
    a, b = _pair(a, b)
    x1 = np.maximum(a[..., 0], b[..., 0])
    y1 = np.maximum(a[..., 1], b[..., 1])
    x2 = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y2 = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[..., 2], 0, None) * np.clip(a[..., 3], 0, None)
    area_b = np.clip(b[..., 2], 0, None) * np.clip(b[..., 3], 0, None)
    union = area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    nan = np.isnan(a).any(-1) | np.isnan(b).any(-1)
    return np.where(nan, np.nan, np.clip(result, 0.0, 1.0))


def centers(boxes) -> np.ndarray:
    """Box centres (x + w / 2, y + h / 2)."""
    boxes = _boxes(boxes)
    return boxes[..., :2] + boxes[..., 2:] / 2


def center_error(pred, gt) -> np.ndarray:
    """Euclidean distance between box centres, in pixels."""
    pred, gt = _pair(pred, gt)
    return np.linalg.norm(centers(pred) - centers(gt), axis=-1)


def normalized_center_error(pred, gt) -> np.ndarray:
    """Centre distance in units of the ground-truth width and height (LaSOT); inf where w or h <= 0."""
    pred, gt = _pair(pred, gt)
    size = gt[..., 2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = (centers(pred) - centers(gt)) / np.where(size > 0, size, np.nan)
        error = np.linalg.norm(scaled, axis=-1)
    return np.where(np.isnan(error) & ~np.isnan(pred).any(-1) & ~np.isnan(gt).any(-1), np.inf, error)


def valid_ground_truth(gt) -> np.ndarray:
    """Frames whose ground truth is a finite box with w > 0 and h > 0."""
    gt = _boxes(gt)
    return np.isfinite(gt).all(-1) & (gt[..., 2] > 0) & (gt[..., 3] > 0)


def success_curve(ious, thresholds=SUCCESS_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with IoU > threshold, per threshold (NaN IoUs count as failures)."""
    ious = np.nan_to_num(np.asarray(ious, dtype=np.float64).reshape(-1), nan=-1.0)
    if ious.size == 0:
        raise ValueError("success_curve() needs at least one frame")
    return (ious[:, None] > np.asarray(thresholds, dtype=np.float64)[None, :]).mean(0)


def precision_curve(errors, thresholds=PRECISION_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with centre error <= threshold, per threshold (NaN errors count as failures)."""
    errors = np.nan_to_num(np.asarray(errors, dtype=np.float64).reshape(-1), nan=np.inf)
    if errors.size == 0:
        raise ValueError("precision_curve() needs at least one frame")
    return (errors[:, None] <= np.asarray(thresholds, dtype=np.float64)[None, :]).mean(0)


def auc(curve) -> float:
    """Area under a success (or normalised precision) curve: the mean over its uniformly spaced thresholds."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.size == 0:
        raise ValueError("auc() of an empty curve")
    return float(curve.mean())


def success_auc(ious, thresholds=SUCCESS_THRESHOLDS) -> float:
    """Success AUC straight from per-frame IoUs: ``auc(success_curve(ious))``."""
    return auc(success_curve(ious, thresholds))


def precision_at(errors, threshold: float = 20.0) -> float:
    """Fraction of frames whose centre error is at most ``threshold`` pixels (precision@20 by default)."""
    return float(precision_curve(errors, [threshold])[0])


def normalized_precision(normalized_errors, thresholds=NORMALIZED_PRECISION_THRESHOLDS) -> float:
    """LaSOT normalised precision: the mean of the normalised precision curve over 0..0.5."""
    return auc(precision_curve(normalized_errors, thresholds))


def average_overlap(ious) -> float:
    """Mean IoU over frames (GOT-10k's AO); NaN IoUs count as 0."""
    ious = np.nan_to_num(np.asarray(ious, dtype=np.float64).reshape(-1), nan=0.0)
    if ious.size == 0:
        raise ValueError("average_overlap() needs at least one frame")
    return float(ious.mean())


def location_and_size_errors(boxes, ground_truth):
    """Where a track loses AUC: the centre error in ground-truth box sizes (sqrt(w h)) and the size error
    |log(sqrt(w h) / sqrt(w_gt h_gt))| (0.1: 10 % too large or small), each the mean over the frames."""
    boxes, ground_truth = np.asarray(boxes, dtype=float), np.asarray(ground_truth, dtype=float)
    if not len(boxes):
        return 0.0, 0.0
    side = np.sqrt(np.prod(np.maximum(ground_truth[:, 2:], 1e-6), 1))
    size = np.abs(np.log(np.sqrt(np.prod(np.maximum(boxes[:, 2:], 1e-6), 1)) / side))
    return float(np.mean(center_error(boxes, ground_truth) / side)), float(np.mean(size))


def sequence_errors(pred, gt, valid=None, first_frame_gt: bool = True):
    """Per-frame IoU, centre error and normalised centre error of one sequence, invalid frames as failures.

    ``valid`` (bool per frame, default: frames with a valid ground-truth box) marks the frames that are
    scored; the others get IoU -1 and errors +inf, so they fail at every threshold but stay in the
    denominator. A prediction row with NaN or w/h <= 0 is replaced by the previous row, and the first
    frame's prediction by the ground truth (``first_frame_gt``), as the OTB and LaSOT toolkits do.
    """
    pred, gt = _pair(pred, gt)
    if pred.ndim != 2:
        raise ValueError(f"sequence_errors() expects (N, 4) arrays, got shape {pred.shape}")
    pred = pred.copy()
    if first_frame_gt and len(pred):
        pred[0] = gt[0]
    for i in range(1, len(pred)):
        if not (np.isfinite(pred[i]).all() and pred[i, 2] > 0 and pred[i, 3] > 0):
            pred[i] = pred[i - 1]
    scored = valid_ground_truth(gt)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool).reshape(-1)
        if valid.shape[0] != len(gt):
            raise ValueError(f"valid has {valid.shape[0]} flags for {len(gt)} frames")
        scored &= valid
    ious = np.where(scored, np.nan_to_num(iou(pred, gt), nan=-1.0), -1.0)
    errors = np.where(scored, np.nan_to_num(center_error(pred, gt), nan=np.inf), np.inf)
    norm_errors = np.where(scored, np.nan_to_num(normalized_center_error(pred, gt), nan=np.inf), np.inf)
    return ious, errors, norm_errors


def ope_summary(pred, gt, valid=None, first_frame_gt: bool = True) -> dict:
    """All OPE numbers of one sequence, in got10k's names: the curves, ``success_score`` (the success AUC),
    ``precision_score`` (precision@20), ``normalized_precision_score``, ``success_rate`` (IoU > 0.5) and
    ``average_overlap`` (AO)."""
    ious, errors, norm_errors = sequence_errors(pred, gt, valid, first_frame_gt)
    succ = success_curve(ious)
    prec = precision_curve(errors)
    norm = precision_curve(norm_errors, NORMALIZED_PRECISION_THRESHOLDS)
    return {
        "success_curve": succ,
        "precision_curve": prec,
        "normalized_precision_curve": norm,
        "success_score": auc(succ),
        "precision_score": float(prec[20]),
        "normalized_precision_score": auc(norm),
        "success_rate": float(succ[10]),
        "average_overlap": average_overlap(np.clip(ious, 0, None)),
        "frames": int(len(ious)),
    }


# ------------------------------------------------------------------------------------------------
# The restart protocol (VOT's supervised experiment): states of a run, per frame. The three specials
# carry VOT's trajectory codes (``vot.tracker.Trajectory``), so result files read in vot-toolkit.
TRACKED, SKIPPED, INITIALIZATION, FAILURE = -1, 0, 1, 2
BURNIN = 10  # frames from each (re-)initialisation left out of the accuracy, as VOT's analyses do


def restart_summary(pred, states, gt, valid=None, burnin: int = BURNIN) -> dict:
    """The restart numbers of one run: VOT's accuracy and failures, failures per 100 frames, the mean
    overlap, and the run's segments for the EAO.

    - accuracy: mean IoU over tracked frames with a visible target, leaving out the ``burnin`` frames
      from every (re-)initialisation (the initialisation frame included), as vot-toolkit's
      ``compute_accuracy``; 0 when no frame is left;
    - failures: frames where the tracker lost the target (IoU 0 with a visible ground truth);
    - mean overlap: IoU averaged over every frame with a visible target except (re-)initialisations,
      frames from a failure to the next initialisation counting 0;
    - segments: (overlaps from an initialisation up to its failure, failed) for ``expected_average_overlap``.
    IoUs are continuous (``iou``); vot-toolkit rasterises regions, which moves them by ~0.01.
    """
    pred, gt = _pair(pred, gt)
    states = np.asarray(states).reshape(-1)
    if len(states) != len(gt):
        raise ValueError(f"{len(states)} states for {len(gt)} frames")
    scored = valid_ground_truth(gt)
    if valid is not None:
        scored &= np.asarray(valid, dtype=bool).reshape(-1)
    tracked = states == TRACKED
    overlaps = np.where(tracked & scored, np.nan_to_num(iou(pred, gt), nan=0.0), 0.0)
    inits, fails = np.flatnonzero(states == INITIALIZATION), np.flatnonzero(states == FAILURE)
    burning = np.zeros(len(states), dtype=bool)
    for i in inits:
        burning[i:i + burnin] = True
    counted = tracked & scored & ~burning
    considered = scored & (states != INITIALIZATION)
    segments = []
    for start in inits:  # each initialisation runs to its failure, or to the end
        end = next((f for f in fails if f > start), None)
        segments.append((overlaps[start:end if end is not None else len(states)], end is not None))
    return {
        "accuracy": float(overlaps[counted].mean()) if counted.any() else 0.0,
        "accuracy_frames": int(counted.sum()),
        "failures": int(len(fails)),
        "frames": int(scored.sum()),
        "failures_per_100": 100.0 * len(fails) / max(int(scored.sum()), 1),
        "mean_overlap": float(overlaps[considered].mean()) if considered.any() else 0.0,
        "on_target": float((overlaps[considered] > 0.1).mean()) if considered.any() else 0.0,
        "segments": segments,
    }


def eao_curve(segments, length: int = 0) -> np.ndarray:
    """VOT's expected average overlap curve over segments ``(overlaps, failed)``: entry j is the mean over
    segments of their average overlap on frames 1..j (the initialisation, frame 0, not counted); a failed
    segment counts zeros after its failure, one that reached the end counts only up to its length. The
    curve has ``length`` entries, or as many as the longest segment when that is longer (vot-toolkit's)."""
    length = max(length, max(len(o) for o, _ in segments))
    padded = np.zeros((len(segments), length))
    mask = np.zeros((len(segments), length))
    for row, (overlaps, failed) in enumerate(segments):
        padded[row, :len(overlaps)] = overlaps
        mask[row, :length if failed else len(overlaps)] = 1
    running = padded.copy()
    running[:, 1:] = np.cumsum(padded[:, 1:], axis=1) / np.arange(1, length)
    with np.errstate(invalid="ignore"):
        return (running * mask).sum(0) / mask.sum(0)


def eao_range(lengths) -> tuple:
    """The sequence lengths over which the EAO curve is averaged: the middle half of the evaluated
    sequences' lengths (VOT takes the typical lengths of its dataset the same way, from their density)."""
    # A run over a whole sequence of n frames ends at entry n - 1 of the curve (entry 0 is its initialisation).
    low, high = np.percentile(np.asarray(lengths, dtype=np.float64) - 1, [25, 75])
    return int(round(low)), int(round(high))


def expected_average_overlap(segments, low: int, high: int) -> float:
    """VOT's EAO: the mean of ``eao_curve`` over lengths ``low``..``high`` (inclusive). Failed segments count
    zeros up to ``high`` however short their sequence, as in VOT's definition (vot-toolkit 0.9 stops the
    curve at the longest segment and then averages a shorter window)."""
    return float(np.nanmean(eao_curve(segments, high + 1)[low:high + 1]))
