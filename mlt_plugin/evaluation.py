"""One-pass evaluation (OPE): initialise on the first frame, track the rest, score against ground truth.

Trackers are named by parameter set (``default``, ``mt``, ``mt_ft``, ...) or ``mil`` for OpenCV's
TrackerMIL, a classical reference measured in the same run. fps counts the tracker's own calls
(initialize + track), not frame decoding.
"""
import json
import multiprocessing
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from mlt_plugin import metrics
from mlt_plugin.params import load_parameters


class OpenCVMIL:
    """OpenCV's TrackerMIL behind the MLT initialize/track interface."""

    def __init__(self):
        self.tracker = cv2.TrackerMIL.create()

    def initialize(self, image, box):
        self.box = [float(v) for v in box]
        self.tracker.init(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), tuple(int(round(v)) for v in box))

    def track(self, image, info=None):
        ok, box = self.tracker.update(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if ok:
            self.box = [float(v) for v in box]
        return {"target_bbox": list(self.box), "object_presence_score": float(ok)}


def make_tracker(name: str, device=None):
    if name == "mil":
        return OpenCVMIL()
    from mlt_plugin.tracking.tracker import MLT

    params = load_parameters(name)
    if device:
        params.device = device
    return MLT(params)


def run_sequence(tracker, sequence, max_frames=None, on_frame=None):
    """Boxes (N, 4) and per-frame tracker seconds (N,) for one sequence, starting from its first box.

    ``on_frame(index, image, box)`` is called after each frame (progress, drawing).
    """
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    boxes = np.zeros((count, 4))
    seconds = np.zeros(count)
    for index in range(count):
        image = sequence.frame(index)
        started = time.perf_counter()
        if index == 0:
            tracker.initialize(image, sequence.boxes[0])
            boxes[0] = sequence.boxes[0]
        else:
            boxes[index] = tracker.track(image)["target_bbox"]
        seconds[index] = time.perf_counter() - started
        if on_frame is not None:
            on_frame(index, image, boxes[index])
    return boxes, seconds


def score(boxes, ground_truth, visible=None):
    """Success AUC, precision@20 px, and the curves, over frames with a visible annotated target."""
    ground_truth = ground_truth[: len(boxes)]
    valid = np.isfinite(ground_truth).all(1) if visible is None else visible[: len(boxes)]
    ious = metrics.iou(boxes[valid], ground_truth[valid])
    errors = metrics.center_error(boxes[valid], ground_truth[valid])
    return {
        "auc": metrics.success_auc(ious),
        "precision20": metrics.precision_at(errors, 20),
        "success_curve": metrics.success_curve(ious).tolist(),
        "precision_curve": metrics.precision_curve(errors).tolist(),
    }


def _job(args):
    tracker_name, sequence, max_frames, device = args
    torch.set_num_threads(1)  # one sequence per worker process: parallel across sequences instead
    warnings.simplefilter("ignore")
    boxes, seconds = run_sequence(make_tracker(tracker_name, device), sequence, max_frames)
    result = score(boxes, sequence.boxes, sequence.visible)
    result.update(frames=len(boxes), seconds=float(seconds.sum()), boxes=boxes.tolist())
    return tracker_name, sequence.name, result


def evaluate(sequences, tracker_names, workers=1, max_frames=None, device=None, progress=None):
    """{tracker: {sequence: result}} for every tracker on every sequence."""
    jobs = [(name, seq, max_frames, device) for name in tracker_names for seq in sequences]
    results = {name: {} for name in tracker_names}
    if workers > 1:
        context = multiprocessing.get_context("spawn")  # no fork of a threaded torch process
        with context.Pool(workers) as pool:
            for name, seq_name, result in pool.imap_unordered(_job, jobs):
                results[name][seq_name] = result
                progress and progress(name, seq_name, result)
    else:
        for job in jobs:
            name, seq_name, result = _job(job)
            results[name][seq_name] = result
            progress and progress(name, seq_name, result)
    return results


def summary(per_sequence: dict) -> dict:
    """Overall scores of one tracker: mean success / precision curves over sequences (OTB style)."""
    success = np.mean([r["success_curve"] for r in per_sequence.values()], axis=0)
    precision = np.mean([r["precision_curve"] for r in per_sequence.values()], axis=0)
    frames = sum(r["frames"] for r in per_sequence.values())
    seconds = sum(r["seconds"] for r in per_sequence.values())
    return {
        "auc": float(success.mean()),
        "precision20": float(precision[20]),
        "fps": frames / max(seconds, 1e-9),
        "frames": frames,
        "success_curve": success.tolist(),
        "precision_curve": precision.tolist(),
    }


def table(results: dict) -> str:
    names = list(results)
    sequences = list(next(iter(results.values())))
    header = f"{'sequence':<16}" + "".join(f"{n + ' AUC':>14}{'P@20':>7}{'fps':>7}" for n in names)
    lines = [header, "-" * len(header)]
    for seq in sequences:
        row = f"{seq:<16}"
        for name in names:
            r = results[name][seq]
            row += f"{r['auc']:>14.3f}{r['precision20']:>7.3f}{r['frames'] / max(r['seconds'], 1e-9):>7.1f}"
        lines.append(row)
    row = f"{'overall':<16}"
    for name in names:
        s = summary(results[name])
        row += f"{s['auc']:>14.3f}{s['precision20']:>7.3f}{s['fps']:>7.1f}"
    lines += ["-" * len(header), row]
    return "\n".join(lines)


def save_report(results: dict, out_dir):
    """results.json (per sequence + overall) and success / precision plots as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {name: {"overall": summary(res), "sequences": res} for name, res in results.items()}
    tmp = out_dir / "results.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out_dir / "results.json")
    for kind, xs, xlabel, key in (
        ("success", metrics.IOU_THRESHOLDS, "overlap threshold", "auc"),
        ("precision", metrics.PIXEL_THRESHOLDS, "location error threshold (px)", "precision20"),
    ):
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, entry in report.items():
            overall = entry["overall"]
            ax.plot(xs, overall[f"{kind}_curve"], label=f"{name} [{overall[key]:.3f}]")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{kind} rate")
        ax.set_title(f"{kind} plot of OPE")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / f"{kind}_plot.png", dpi=100)
        plt.close(fig)
    return out_dir / "results.json"
