"""The one evaluation core under `mlt eval`, the got10k runner and the LaSOT experiment.

Runner (``run``): a work item is (tracker, sequence, start). It initialises on the first frame with
the start box, tracks the rest, times the tracker's own calls (initialize + track, not frame
decoding), shows progress inside the sequence, and writes the item's result files atomically when it
ends: ``<result_dir>/<tracker>/<seq>.txt`` (boxes, comma separated, in the layout's own coordinates:
1-based for OTB-style layouts, as their toolkits expect) and ``times/<seq>_time.txt``. An item whose
boxes file exists is loaded instead of run, so an interrupted run resumes. ``workers`` runs items in
parallel processes, ``shard=(i, n)`` only every n-th sequence from i (to split across machines).

Starts (``starts=K``, ``temporal_starts=J``): start 0 is the exact first ground-truth box; starts 1..K-1
are OTB's spatial robustness (SRE) perturbations of it, taken in the fixed order of ``SRE_STARTS`` (shifts
of 10 % of the size, scales 0.8/0.9/1.1/1.2 about the centre); temporal starts (OTB's TRE) initialise on
the ground truth at a later frame (``TRE_STARTS``: half-way, a quarter, ...) and are scored from there.
Their results go to ``<seq>_start<k>.txt`` and ``<seq>_tre<j>.txt`` (NaN rows before the start).

Protocols (``protocol``): ``one-pass`` as above; ``restart``, VOT's supervised experiment
(``run_sequence_restart``): re-initialised on the ground truth 5 frames after a failure (IoU 0 with a
visible target), its files in vot-toolkit's trajectory format (``trajectory_text``), scored by
``metrics.restart_summary`` (accuracy, failures, mean overlap) and VOT's EAO (``restart_performance``).

Scorer (``score``): ``mlt_plugin.metrics.ope_summary``. The one rule for frames without a valid box
(NaN, w or h <= 0, or marked absent/occluded by the layout): they count as failures at every threshold
and stay in the denominator, as in the official LaSOT toolkit; the first frame's prediction is the
ground truth. Success AUC = mean of the success curve over 21 IoU thresholds 0:0.05:1 (the OTB/LaSOT
"AUC", got10k's ``success_score`` with ``nbins_iou=21``); precision = share of frames with centre
error <= 20 px; normalised precision = LaSOT's, mean over 0:0.01:0.5. Curves are averaged over
sequences and starts. fps = frames / seconds of tracker calls, per sequence and overall (one
definition everywhere).

Report (``report``): ``performance.json`` (got10k's shape: ``{tracker: {"overall", "seq_wise"}}``)
and one plot function (``plot_curves``) for the success, precision and normalised precision plots.
"""
import json
import multiprocessing
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlt_plugin import metrics
from mlt_plugin.files import write_atomic, write_text_atomic

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
PROTOCOLS = ("one-pass", "restart")
RESTART_SKIP = 5  # frames from a failure to the re-initialisation (VOT's skip_initialize)


def tracker_name(params) -> str:
    """'MLT' for the default parameter set, 'MLT-<name>' otherwise (MLT-mt, MLT-paper, MLT-lite, MLT-lite_mt, ...):
    the toolkits' result folder names and the VOT trackers.ini sections."""
    return "MLT" if params == "default" else f"MLT-{params}"


@dataclass(frozen=True)
class TrackerSpec:
    """A tracker by parameter set (or 'mil') and overrides; built inside the process that runs it."""

    name: str
    params: object = "default"
    overrides: dict = field(default_factory=dict, hash=False)

    def build(self):
        from mlt_plugin.build import build_tracker

        return build_tracker(self.params, **self.overrides)


class _Built:
    """An already-built tracker object as a spec (runs in this process only)."""

    def __init__(self, tracker, name):
        self.tracker, self.name = tracker, name

    def build(self):
        return self.tracker


class _InitUpdate:
    """A got10k-style tracker (``init(image, box)``, ``update(image) -> box``, PIL RGB images)."""

    def __init__(self, tracker):
        self.tracker = tracker

    def initialize(self, image, box):
        from PIL import Image

        self.tracker.init(Image.fromarray(image), np.asarray(box, dtype=np.float64))

    def track(self, image):
        from PIL import Image

        return {"target_bbox": np.asarray(self.tracker.update(Image.fromarray(image)), dtype=np.float64)}


def as_spec(tracker):
    """Anything the runner takes: a spec (``name`` + ``build()``), an MLT-like object
    (``initialize``/``track``) or a got10k-style one (``init``/``update``), both with a ``name``."""
    if hasattr(tracker, "build"):
        return tracker
    name = getattr(tracker, "name", type(tracker).__name__)
    if hasattr(tracker, "initialize"):
        return _Built(tracker, name)
    if hasattr(tracker, "init") and hasattr(tracker, "update"):
        return _Built(_InitUpdate(tracker), name)
    raise ValueError(f"{tracker!r} is no tracker: give initialize/track, init/update, or a TrackerSpec")


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


def parse_shard(text):
    """'i/n' -> (i, n) with 0 <= i < n; None stays None."""
    if text is None or isinstance(text, tuple):
        return text
    parts = str(text).replace(" ", "").split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 0 <= int(parts[0]) < int(parts[1]):
        raise ValueError(f"shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(parts[0]), int(parts[1])


# ------------------------------------------------------------------------------------------------
# Runner


def start_label(start: int) -> str:
    return "" if start == 0 else f"start{start}" if start > 0 else f"tre{-start}"


def result_files(result_dir, tracker, sequence_name, start=0):
    stem = f"{sequence_name}_{start_label(start)}" if start else sequence_name
    folder = Path(result_dir) / tracker
    return folder / f"{stem}.txt", folder / "times" / f"{stem}_time.txt"


def run_sequence(tracker, sequence, max_frames=None, init_box=None, on_frame=None, first=0):
    """Boxes (N, 4) and per-frame tracker seconds (N,) of one sequence, initialised on frame ``first`` with
    ``init_box`` (default: its box there); boxes before ``first`` are NaN.

    ``on_frame(index, image, box)`` is called after each frame (progress, drawing).
    """
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    init_box = sequence.boxes[first] if init_box is None else np.asarray(init_box, dtype=np.float64)
    boxes, seconds = np.full((count, 4), np.nan), np.zeros(count)
    for index in range(first, count):
        image = sequence.frame(index)
        started = time.perf_counter()
        if index == first:
            tracker.initialize(image, init_box)
            boxes[index] = init_box
        else:
            boxes[index] = tracker.track(image)["target_bbox"]
        seconds[index] = time.perf_counter() - started
        if on_frame is not None:
            on_frame(index, image, boxes[index])
    return boxes, seconds


def run_sequence_restart(tracker, sequence, max_frames=None, on_frame=None, skip=RESTART_SKIP):
    """The restart protocol on one sequence: boxes (N, 4), per-frame tracker seconds (N,) and states (N,)
    (``metrics.TRACKED``, ``INITIALIZATION``, ``FAILURE``, ``SKIPPED``).

    VOT's supervised experiment: initialise on the ground truth; a frame whose box has IoU 0 with a
    visible ground truth is a failure; the tracker is initialised again ``skip`` frames later (on the
    next frame with a visible target), the frames between are skipped. Boxes are NaN on every frame
    but the tracked ones (``on_frame`` sees the failed box and the initial one).
    """
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    visible = sequence.visible[:count] & metrics.valid_ground_truth(sequence.boxes[:count])
    boxes, seconds = np.full((count, 4), np.nan), np.zeros(count)
    states = np.full(count, metrics.SKIPPED, dtype=np.int8)
    index, initialise = 0, True
    while index < count:
        if initialise:
            index = next((i for i in range(index, count) if visible[i]), count)
            if index == count:
                break
        image = sequence.frame(index)
        started = time.perf_counter()
        if initialise:
            tracker.initialize(image, sequence.boxes[index])
            boxes[index], states[index] = sequence.boxes[index], metrics.INITIALIZATION
        else:
            boxes[index], states[index] = tracker.track(image)["target_bbox"], metrics.TRACKED
        seconds[index] = time.perf_counter() - started
        if on_frame is not None:
            on_frame(index, image, boxes[index])
        if not initialise and visible[index] and not metrics.iou(boxes[index], sequence.boxes[index]) > 0:  # NaN fails
            states[index] = metrics.FAILURE
            index, initialise = index + skip, True
            continue
        index, initialise = index + 1, False
    boxes[states != metrics.TRACKED] = np.nan  # as the result file keeps them: codes, not boxes
    return boxes, seconds, states


_BUILT = {}  # per process: trackers built once and reused across sequences


def _run_item(item):
    spec, sequence, start, max_frames, result_dir, bar, protocol = item
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    label = f"{spec.name} {sequence.name} {start_label(start)}".rstrip()
    if spec not in _BUILT:
        _BUILT.clear()  # one tracker at a time: a worker moves on to the next tracker's items
        _BUILT[spec] = spec.build()
    from tqdm import tqdm

    # Worker processes print a line every 500 frames instead of bars that would interleave.
    progress = tqdm(total=count, desc=label, unit="frame", leave=False, disable=not bar)

    def on_frame(index, image, box):
        progress.update()
        if not bar and (index + 1) % 500 == 0:
            print(f"  {label}: frame {index + 1}/{count}", flush=True)

    try:
        if protocol == "restart":
            boxes, seconds, states = run_sequence_restart(_BUILT[spec], sequence, count, on_frame)
        else:
            first = first_frame(sequence, start, count)
            boxes, seconds = run_sequence(_BUILT[spec], sequence, count, start_box(sequence.boxes[first], start),
                                          on_frame, first)
            states = None
    finally:
        progress.close()  # also on an error: its one-line message then stands alone
    boxes = boxes.round(3)  # what the result file holds: a fresh and a resumed run score alike
    if result_dir is not None:
        box_file, time_file = result_files(result_dir, spec.name, sequence.name, start)
        # Times first, boxes last: the boxes file marks the item as done.
        write_atomic(time_file, lambda tmp: np.savetxt(tmp, seconds, fmt="%.8f"))
        saved = boxes + [1, 1, 0, 0] if sequence.one_based else boxes
        if states is None:
            write_atomic(box_file, lambda tmp: np.savetxt(tmp, saved, fmt="%.3f", delimiter=","))
        else:
            write_text_atomic(box_file, trajectory_text(saved, states))
    return spec.name, sequence.name, start, (boxes, seconds) if states is None else (boxes, seconds, states)


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


def _worker_init(threads):
    import torch

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")


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


def run(trackers, sequences, result_dir=None, starts=1, workers=1, shard=None, max_frames=None, log=print,
        protocol="one-pass", temporal_starts=0):
    """Run every (tracker, sequence, start) not saved yet (``start_ids``); returns {tracker: {sequence:
    [(boxes, seconds)] per start}}, with (boxes, seconds, states) for ``protocol="restart"`` (one start: the
    restarts begin on the ground truth)."""
    specs = [as_spec(t) for t in trackers]
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if protocol == "restart" and (starts != 1 or temporal_starts):
        raise ValueError("the restart protocol initialises on the ground truth after every failure: "
                         "no --starts or --temporal-starts with it")
    ids = start_ids(starts, temporal_starts)
    if max_frames is not None and max_frames < 2:
        raise ValueError(f"--frames must be at least 2 (the first frame only initialises), got {max_frames}")
    shard = parse_shard(shard)
    if shard is not None:
        sequences = sequences[shard[0]::shard[1]]
    results = {spec.name: {seq.name: [None] * len(ids) for seq in sequences} for spec in specs}
    todo = []
    for spec in specs:
        for seq in sequences:
            for start in ids:
                saved = None if result_dir is None else load_result(result_dir, spec.name, seq, start, max_frames,
                                                                     protocol)
                if saved is None:
                    todo.append((spec, seq, start))
                else:
                    results[spec.name][seq.name][ids.index(start)] = saved
    done = sum(len(v) for r in results.values() for v in r.values()) - len(todo)
    log(f"{len(specs)} tracker(s) x {len(sequences)} sequences x {len(ids)} start(s): {len(todo)} to run"
        + (f", {done} already saved in {result_dir}" if done else ""))
    local = any(isinstance(s, _Built) for s in specs)  # built objects stay in this process
    if workers > 1 and not local and len(todo) > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        items = [(spec, seq, start, max_frames, result_dir, False, protocol) for spec, seq, start in todo]
        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch threads
        pool = context.Pool(workers, initializer=_worker_init, initargs=(threads,))
        try:
            _collect(pool.imap_unordered(_run_item, items), results, ids, len(items), log)
        except BaseException:
            pool.terminate()
            raise
        else:
            # Not terminate(), as `with Pool` does: workers that exit on their own run their finalizers, else
            # OpenVINO's (int8) leaves a semaphore behind and Python warns about it at exit.
            pool.close()
        finally:
            pool.join()
    else:
        outputs = (_run_item((spec, seq, start, max_frames, result_dir, True, protocol)) for spec, seq, start in todo)
        _collect(outputs, results, ids, len(todo), log)
    _BUILT.clear()
    return results


def _collect(outputs, results, ids, total, log):
    for count, (name, seq_name, start, result) in enumerate(outputs, 1):
        results[name][seq_name][ids.index(start)] = result
        seconds = result[1]
        fps = np.count_nonzero(seconds) / max(float(np.sum(seconds)), 1e-9)
        log(f"[{count}/{total}] {name} {seq_name} {start_label(start)}".rstrip() + f": {fps:.1f} fps")


# ------------------------------------------------------------------------------------------------
# Scorer and report


def score(boxes, sequence) -> dict:
    """All OPE numbers of one run on ``sequence`` from its first box on (a TRE start's earlier rows are NaN;
    the rule for frames without a valid box: module doc)."""
    n, first = len(boxes), int(np.argmax(np.isfinite(boxes).all(1)))
    return metrics.ope_summary(boxes[first:], sequence.boxes[first:n], valid=sequence.visible[first:n])


def _spread(values, key):
    values = np.asarray(values, dtype=np.float64)
    return {key: float(values.mean()), f"{key}_std": float(values.std()), f"{key}_min": float(values.min()),
            f"{key}_max": float(values.max())}


def _entry(summaries, frames, seconds) -> dict:
    """Scores of a list of runs (one per start, or per sequence x start): mean curves and AUC spread over starts."""
    curves = {k: np.mean([s[k] for s in summaries], axis=0)
              for k in ("success_curve", "precision_curve", "normalized_precision_curve")}
    entry = {k: v.tolist() for k, v in curves.items()}
    entry.update(
        success_score=metrics.auc(curves["success_curve"]),
        precision_score=float(curves["precision_curve"][20]),
        normalized_precision_score=metrics.auc(curves["normalized_precision_curve"]),
        success_rate=float(curves["success_curve"][10]),  # IoU > 0.5
        frames=int(frames),
        speed_fps=float(frames / seconds) if seconds > 0 else -1.0,
    )
    return entry


def _check_complete(name, per_sequence):
    missing = [seq for seq, runs in per_sequence.items() if any(r is None for r in runs)]
    if missing:
        raise ValueError(f"{name}: no results for {len(missing)} of {len(per_sequence)} sequences (first: "
                         f"{', '.join(missing[:3])}); run them (all shards) into the same result folder")


def performance(results, sequences) -> dict:
    """{tracker: {"overall": ..., "seq_wise": {seq: ...}}} from ``run``'s one-pass results."""
    by_name = {s.name: s for s in sequences}
    out = {}
    for name, per_sequence in results.items():
        _check_complete(name, per_sequence)
        seq_wise, per_start = {}, None
        frames = seconds = 0
        for seq_name, runs in per_sequence.items():
            summaries = [score(boxes, by_name[seq_name]) for boxes, _ in runs]
            n = sum(np.count_nonzero(t) for _, t in runs)
            s = float(np.nansum([np.sum(t) for _, t in runs]))
            entry = _entry(summaries, n, s)
            entry.update(_spread([x["success_auc"] for x in summaries], "success_score"), starts=len(runs))
            seq_wise[seq_name] = entry
            per_start = [[] for _ in runs] if per_start is None else per_start
            for k, summary in enumerate(summaries):
                per_start[k].append(summary)
            frames, seconds = frames + n, seconds + s
        overall = _entry([x for runs in per_start for x in runs], frames, seconds)
        overall.update(_spread([np.mean([x["success_auc"] for x in runs]) for runs in per_start], "success_score"),
                       starts=len(per_start), sequences=len(seq_wise))
        out[name] = {"overall": overall, "seq_wise": seq_wise}
    return out


def restart_performance(results, sequences) -> dict:
    """{tracker: {"overall": ..., "seq_wise": {seq: ...}}} from ``run``'s restart results
    (``metrics.restart_summary`` per sequence).

    Overall: ``mean_overlap`` is the mean over sequences (the paired intervals compare these);
    ``accuracy`` weights sequences by their frames and ``failures_per_100`` pools them, as vot-toolkit's
    average AR analysis does; ``eao`` is VOT's expected average overlap over all runs' segments, averaged
    over the lengths ``eao_range`` (the middle half of these sequences' lengths).
    """
    by_name = {s.name: s for s in sequences}
    eao_range = metrics.eao_range([len(runs[0][0]) for runs in next(iter(results.values())).values() if runs[0]])
    out = {}
    for name, per_sequence in results.items():
        _check_complete(name, per_sequence)
        seq_wise, segments = {}, []
        for seq_name, [(boxes, seconds, states)] in per_sequence.items():
            sequence = by_name[seq_name]
            summary = metrics.restart_summary(boxes, states, sequence.boxes[:len(boxes)], sequence.visible[:len(boxes)])
            segments += summary.pop("segments")
            summary["seconds"] = float(np.nansum(seconds))
            summary["speed_fps"] = np.count_nonzero(seconds) / max(summary["seconds"], 1e-9)
            seq_wise[seq_name] = summary
        entries = list(seq_wise.values())
        frames = sum(e["frames"] for e in entries)
        seconds = sum(e["seconds"] for e in entries)
        overall = {
            "mean_overlap": float(np.mean([e["mean_overlap"] for e in entries])),
            "accuracy": sum(e["accuracy"] * e["frames"] for e in entries) / max(frames, 1),
            "failures": sum(e["failures"] for e in entries),
            "failures_per_100": 100.0 * sum(e["failures"] for e in entries) / max(frames, 1),
            "on_target": float(np.mean([e["on_target"] for e in entries])),
            "eao": metrics.expected_average_overlap(segments, *eao_range),
            "eao_range": list(eao_range),
            "frames": frames,
            "sequences": len(entries),
            "speed_fps": sum(np.count_nonzero(r[0][1]) for r in per_sequence.values()) / max(seconds, 1e-9),
        }
        out[name] = {"overall": overall, "seq_wise": seq_wise}
    return out


def paired_difference(perf: dict, name: str, baseline: str, key: str = "success_score", resamples: int = 10000,
                      seed: int = 0) -> dict:
    """``key`` (default: success AUC) of ``name`` minus ``baseline`` with a 95 % paired bootstrap interval over
    sequences.

    Sequences differ far more than two trackers do on one sequence, so the interval resamples the
    per-sequence differences (each a mean over starts): it says whether this set of sequences can tell
    the two apart, which the overall numbers alone cannot.
    """
    sequences = list(perf[baseline]["seq_wise"])
    diffs = np.array([perf[name]["seq_wise"][s][key] - perf[baseline]["seq_wise"][s][key] for s in sequences])
    picks = np.random.default_rng(seed).integers(0, len(diffs), (resamples, len(diffs)))
    low, high = np.percentile(diffs[picks].mean(1), [2.5, 97.5])
    return {"baseline": baseline, key: float(diffs.mean()), "ci95": [float(low), float(high)], "sequences": len(diffs)}


# What the paired intervals compare, per protocol: (key, label)
COMPARED = {
    "one-pass": (("success_score", "success AUC"),),
    "restart": (("mean_overlap", "mean overlap"), ("accuracy", "accuracy"),
                ("failures_per_100", "failures per 100 frames")),
}


def differences(perf: dict, protocol: str = "one-pass") -> str:
    """Paired differences (``paired_difference``) of every pair of trackers on the protocol's first number
    (success AUC, or the restart mean overlap), and of every tracker against the first on its other numbers.
    Each is also stored in ``perf[name]["overall"]["paired_difference"][key][baseline]`` for the report."""
    names = list(perf)
    lines = []
    for rank, (key, label) in enumerate(COMPARED[protocol]):
        lines.append(f"{label}, 95 % paired bootstrap intervals over sequences:")
        pairs = [(a, b) for i, b in enumerate(names) for a in names[i + 1:]] if rank == 0 else \
            [(a, names[0]) for a in names[1:]]
        for name, baseline in pairs:
            d = paired_difference(perf, name, baseline, key)
            perf[name]["overall"].setdefault("paired_difference", {}).setdefault(key, {})[baseline] = d
            lines.append(f"  {name} minus {baseline}: {d[key]:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
    return "\n".join(lines)


def table(perf: dict) -> str:
    """Per-sequence and overall success AUC (mean over starts, with min-max when several), P@20, fps."""
    names = list(perf)
    sequences = list(next(iter(perf.values()))["seq_wise"])

    def cell(entry):
        spread = f" ({entry['success_score_min']:.3f}-{entry['success_score_max']:.3f})" if entry["starts"] > 1 else ""
        return f"{entry['success_score']:>7.3f}{spread:>14}{entry['precision_score']:>7.3f}{entry['speed_fps']:>7.1f}"

    width = 16 + 35 * len(names)
    header = f"{'sequence':<16}" + "".join(f"{n + ' AUC':>21}{'P@20':>7}{'fps':>7}" for n in names)
    lines = [header, "-" * width]
    lines += [f"{seq:<16}" + "".join(cell(perf[n]["seq_wise"][seq]) for n in names) for seq in sequences]
    lines += ["-" * width, f"{'overall':<16}" + "".join(cell(perf[n]["overall"]) for n in names)]
    return "\n".join(lines)


def restart_table(perf: dict) -> str:
    """Per-sequence and overall restart numbers: mean overlap, accuracy, failures (per 100 frames overall), fps."""
    names = list(perf)
    sequences = list(next(iter(perf.values()))["seq_wise"])

    def cell(entry, failures):
        return f"{entry['mean_overlap']:>12.3f}{entry['accuracy']:>7.3f}{failures:>10}{entry['speed_fps']:>7.1f}"

    width = 16 + 36 * len(names)
    header = f"{'sequence':<16}" + "".join(f"{n[:11] + ' overlap':>20}{'acc':>7}{'fail':>10}{'fps':>7}" for n in names)
    lines = [header, "-" * width]
    lines += [f"{seq:<16}" + "".join(cell(perf[n]["seq_wise"][seq], perf[n]["seq_wise"][seq]["failures"]) for n in names)
              for seq in sequences]
    overall = [perf[n]["overall"] for n in names]
    lines += ["-" * width, f"{'overall':<16}" + "".join(cell(o, f"{o['failures_per_100']:.2f}/100") for o in overall),
              f"{'EAO':<16}" + "".join(f"{o['eao']:>12.3f}{'':>24}" for o in overall)
              + f"   (lengths {overall[0]['eao_range'][0]}-{overall[0]['eao_range'][1]})"]
    return "\n".join(lines)


def report(perf: dict, report_dir, title="OPE", filename="performance.json") -> Path:
    """Write ``filename`` (JSON) and the plots into ``report_dir``; returns the JSON path."""
    report_dir = Path(report_dir)
    write_text_atomic(report_dir / filename, json.dumps(perf, indent=1))
    plot_curves(perf, report_dir, title)
    return report_dir / filename


def plot_curves(perf: dict, report_dir, title="OPE"):
    """success_plots.png, precision_plots.png, norm_precision_plots.png: one curve per tracker, ranked."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    plots = (
        ("success_plots.png", "success_curve", "success_score", metrics.SUCCESS_THRESHOLDS,
         "Overlap threshold", "Success rate", "Success plots", (0, 1)),
        ("precision_plots.png", "precision_curve", "precision_score", metrics.PRECISION_THRESHOLDS,
         "Location error threshold (px)", "Precision", "Precision plots", (0, 50)),
        ("norm_precision_plots.png", "normalized_precision_curve", "normalized_precision_score",
         metrics.NORMALIZED_PRECISION_THRESHOLDS, "Normalized location error threshold", "Normalized precision",
         "Normalized precision plots", (0, 0.5)),
    )
    for filename, curve_key, score_key, xs, xlabel, ylabel, what, xlim in plots:
        ranked = sorted(perf, key=lambda n: -perf[n]["overall"][score_key])
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for i, name in enumerate(ranked):
            overall = perf[name]["overall"]
            ax.plot(xs, overall[curve_key], ["-", "--", "-."][i // 10 % 3], label=f"{name} [{overall[score_key]:.3f}]")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{what} of {title}", xlim=xlim, ylim=(0, 1))
        ax.grid(True)
        ax.legend(loc="lower left" if curve_key == "success_curve" else "lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(Path(report_dir) / filename, dpi=120)
        plt.close(fig)


def print_summary(perf: dict, name: str, report_dir):
    """The headline numbers of one tracker, with what each one is."""
    overall = perf[name]["overall"]
    spread = (f" (over {overall['starts']} starts: std {overall['success_score_std']:.3f}, "
              f"min {overall['success_score_min']:.3f}, max {overall['success_score_max']:.3f})"
              if overall["starts"] > 1 else "")
    print(f"{name} on {overall['sequences']} sequences, {overall['frames']} frames:")
    print(f"  success AUC (mean of the success curve over 21 IoU thresholds; got10k 'success_score'): "
          f"{overall['success_score']:.3f}{spread}")
    print(f"  precision@20px: {overall['precision_score']:.3f}")
    print(f"  normalized precision (mean over 0..0.5): {overall['normalized_precision_score']:.3f}")
    print(f"  speed: {overall['speed_fps']:.1f} fps (frames / seconds in the tracker's calls, decoding excluded)")
    print(f"  report: {report_dir}")


# ------------------------------------------------------------------------------------------------
# The got10k experiment shape over the core (the got10k runner and ExperimentLaSOT)


class Experiment:
    """``run(tracker, workers=1)`` and ``report(tracker_names)`` on a list of sequences.

    Results go to ``result_dir/<benchmark>[-firstN]/<tracker>/``, reports to
    ``report_dir/<benchmark>[-firstN]/<first tracker>/`` (performance.json + plots).
    """

    def __init__(self, sequences, benchmark, result_dir="results", report_dir="reports", frames=None, shard=None,
                 starts=1):
        if frames is not None and frames < 2:
            raise ValueError(f"--frames must be at least 2 (the first frame only initialises), got {frames}")
        self.sequences, self.benchmark, self.frames, self.starts = list(sequences), benchmark, frames, starts
        self.shard = parse_shard(shard)
        folder = benchmark if frames is None else f"{benchmark}-first{frames}"
        self.result_dir, self.report_dir = os.path.join(result_dir, folder), os.path.join(report_dir, folder)

    @property
    def seq_names(self):
        return [s.name for s in self.sequences]

    def shard_names(self):
        shard = self.shard or (0, 1)
        return self.seq_names[shard[0]::shard[1]]

    def run(self, tracker, visualize=False, workers=1):
        """Track every sequence of this shard that has no saved result yet (``visualize`` is not supported)."""
        print(f"{self.benchmark}: {len(self.shard_names())} sequences" + (f" (shard {self.shard[0]}/{self.shard[1]})"
                                                                          if self.shard else ""))
        run([tracker], self.sequences, self.result_dir, self.starts, workers, self.shard, self.frames)

    def missing_results(self, tracker_name):
        return [s.name for s in self.sequences
                if not result_files(self.result_dir, tracker_name, s.name)[0].is_file()]

    def report(self, tracker_names):
        tracker_names = [tracker_names] if isinstance(tracker_names, str) else list(tracker_names)
        results = {name: {s.name: [load_result(self.result_dir, name, s, k, self.frames) for k in range(self.starts)]
                          for s in self.sequences} for name in tracker_names}
        perf = performance(results, self.sequences)
        report(perf, os.path.join(self.report_dir, tracker_names[0]), self.benchmark)
        return perf


def add_runner_arguments(parser):
    """The options every runner's command line shares (the got10k runner, the LaSOT experiment)."""
    from mlt_plugin.params import parameter_set_names

    parser.add_argument("--params", default="default",
                        help="MLT parameter set: " + ", ".join(parameter_set_names()) + " (default: default)")
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=1, help="sequences tracked in parallel processes")
    parser.add_argument("--shard", help="i/n: only sequences i, i+n, i+2n, ... (split across machines; then --report-only)")
    parser.add_argument("--frames", type=int, help="only the first N frames of every sequence (quick checks)")
    parser.add_argument("--result-dir", default="results")
    parser.add_argument("--report-dir", default="reports")
    parser.add_argument("--report-only", action="store_true", help="do not track; report the saved results")
    parser.add_argument("--no-report", action="store_true", help="only track (e.g. one shard of a split run)")


def runner_main(args, make_experiment, run=None) -> int:
    """What the runners' command lines do: check the parameter set, build the experiment, ``run`` it
    (default ``run_experiment``); a bad input is one line on stderr and exit status 2."""
    from mlt_plugin.params import load_parameters

    overrides = {k: v for k, v in (("weights", args.weights), ("device", args.device)) if v}
    tracker = TrackerSpec(tracker_name(args.params), args.params, overrides)
    try:
        load_parameters(args.params)  # an unknown name fails here, not in a worker
        return (run or run_experiment)(make_experiment(), tracker, args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run_experiment(experiment, tracker, args) -> int:
    """Run, then report and print unless only a shard ran (``args``: the runner options)."""
    if not args.report_only:
        experiment.run(tracker, workers=args.workers)
    missing = experiment.missing_results(tracker.name)
    if args.no_report or (missing and experiment.shard is not None and not args.report_only):
        if missing:
            print(f"{len(missing)} sequences have no results yet (other shards): collect all shards' results in "
                  f"{experiment.result_dir}, then run again with --report-only")
        return 0
    perf = experiment.report([tracker.name])
    print_summary(perf, tracker.name, os.path.join(experiment.report_dir, tracker.name))
    return 0
