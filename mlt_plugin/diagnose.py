"""What the meta-learner does while tracking (issue 12): per update and per sequence, with the ground truth.

    python -m mlt_plugin.diagnose PATH [PATH...] [--params default mt ...] [--starts 3] [--frames N]

Without PATH: the select half of the validation split (mlt_plugin/training/split.py), where choices are
made; ``--half report`` only to look at a claim. A parameter set may carry overrides
after '@', e.g. ``default@update_interval=1000000000`` (MLT with updates switched off) or
``default@confidence=probability`` (the old gate). Everything runs in fp32 unless --precision says
otherwise.

Per update (with --updates) it prints:
- delta: the RMS of the raw gradient of eq. (2) (the meta-learner sees delta / RMS, see meta_learner.py);
- attention: min / mean / max over the 192 base and the 32 target channels, and saturation, the share of
  channels within 0.02 of the bounds 0.5 and 1.5;
- target share: the target channels' share of the exemplar embedding's energy before L2 normalisation;
- memory: its size, its share of patches whose tracked box has IoU < 0.3 with the ground truth (or whose
  frame has no visible target), and the same share among the M patches chosen for this update.
Per sequence start: AUC, the mean centre error (in target sizes) and size error (|log| of the size ratio),
which tell a lost position from a wrong scale, frames stored in the memory, and their share with IoU < 0.3,
and the share of low-IoU frames among those each gate (probability, relative, psr, at tau) would have
stored on this same trajectory. At the end: mean AUC per parameter set, per sequence and overall.
"""
import argparse
import json
import sys
import time
import warnings

import numpy as np
import torch

from mlt_plugin import metrics
from mlt_plugin.build import build_tracker, parse_variant
from mlt_plugin.params import load_parameters
from mlt_plugin.sequences import load_sequences

LOW_IOU = 0.3


def make_tracker(spec, weights=None, precision="fp32", device="cpu"):
    """The tracker of a parameter variant ('name@key=value,...'); ``weights`` only for the meta-learner sets."""
    name, _ = parse_variant(spec)
    weights = weights if load_parameters(name).update == "meta" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_tracker(spec, device=device, precision=precision, weights=weights)


def start_frames(sequence, starts: int) -> list:
    """``starts`` start frames at 0, L/n, 2L/n, ... (each moved to the next frame with a visible target)."""
    visible = np.flatnonzero(sequence.visible)
    result = []
    for k in range(starts):
        later = visible[visible >= k * len(sequence) // starts]
        if len(later) and len(sequence) - later[0] > 1 and int(later[0]) not in result:
            result.append(int(later[0]))
    return result


def _ious(boxes, ground_truth):
    """IoU per frame, 0 where the ground truth has no visible target."""
    ious = np.zeros(len(boxes))
    valid = np.isfinite(ground_truth).all(1) & (ground_truth[:, 2:] > 0).all(1)
    if valid.any():
        ious[valid] = metrics.iou(np.asarray(boxes)[valid], ground_truth[valid])
    return ious


def location_and_size_errors(boxes, ground_truth):
    """Where a track loses AUC: the centre error in ground-truth box sizes (sqrt(w h)) and the size error
    |log(sqrt(w h) / sqrt(w_gt h_gt))| (0.1: 10 % too large or small), each the mean over the frames."""
    boxes, ground_truth = np.asarray(boxes, dtype=float), np.asarray(ground_truth, dtype=float)
    if not len(boxes):
        return 0.0, 0.0
    side = np.sqrt(np.prod(np.maximum(ground_truth[:, 2:], 1e-6), 1))
    size = np.abs(np.log(np.sqrt(np.prod(np.maximum(boxes[:, 2:], 1e-6), 1)) / side))
    return float(np.mean(metrics.center_error(boxes, ground_truth) / side)), float(np.mean(size))


def update_report(tracker, ground_truth, record) -> dict:
    """The numbers of the latest update (tracker.last_update)."""
    net = tracker.net
    delta = record["delta"]
    report = {"frame": record["frame"], "delta_rms": float(delta.float().pow(2).mean().sqrt())}
    if tracker.attention is not None:
        attention = tracker.attention[0].float()
        saturated = ((attention < 0.52) | (attention > 1.48)).float()
        report.update(
            att_base=[float(attention[:192].min()), float(attention[:192].mean()), float(attention[:192].max())],
            att_target=[float(attention[192:].min()), float(attention[192:].mean()), float(attention[192:].max())],
            saturation=float(saturated.mean()),
        )
        with torch.inference_mode():
            features = net.features(tracker.template_conv4, w_target=tracker.w_target, attention=tracker.attention,
                                    target_bias=tracker.target_bias).float()
        energy = features.pow(2).sum((0, 2, 3))
        report["target_share"] = float(energy[192:].sum() / energy.sum())
    patches = list(tracker.memory.patches)
    memory_ious = _ious([q.box for q in patches], ground_truth[[q.frame for q in patches]]) if patches else []
    chosen = record["patches"]
    chosen_ious = _ious([q.box for q in chosen], ground_truth[[q.frame for q in chosen]]) if chosen else []
    report.update(memory=len(patches), memory_low=float(np.mean(np.asarray(memory_ious) < LOW_IOU)) if patches else 0.0,
                  chosen_low=float(np.mean(np.asarray(chosen_ious) < LOW_IOU)) if chosen else 0.0)
    return report


def format_update(r) -> str:
    text = f"    update @ {r['frame']:4d}: delta RMS {r['delta_rms']:.2e}"
    if "att_base" in r:
        text += (" | attention base {:.2f}/{:.2f}/{:.2f} target {:.2f}/{:.2f}/{:.2f} saturated {:.0%}".format(
            *r["att_base"], *r["att_target"], r["saturation"]) + f" | target share {r['target_share']:.1%}")
    return text + f" | memory {r['memory']} ({r['memory_low']:.0%} IoU<{LOW_IOU}), chosen {r['chosen_low']:.0%} IoU<{LOW_IOU}"


def run_start(tracker, sequence, start, max_frames=None, show_updates=False, tau=0.5):
    """Track from ``start``; returns the per-start summary (and prints each update with show_updates)."""
    end = len(sequence) if max_frames is None else min(len(sequence), start + max_frames)
    ground_truth = sequence.boxes
    boxes = [ground_truth[start]]
    stored, probability, relative, psr, updates = [], [], [], [], []
    tracker.initialize(sequence.frame(start), ground_truth[start])
    for index in range(start + 1, end):
        before = len(tracker.memory.patches) and tracker.memory.patches[-1]
        box = tracker.track(sequence.frame(index))["target_bbox"]
        boxes.append(box)
        after = len(tracker.memory.patches) and tracker.memory.patches[-1]
        stored.append(after is not before and bool(after))
        probability.append(tracker.last_probability)
        relative.append(tracker.last_relative)
        psr.append(tracker.last_psr)
        if tracker.last_update is not None and tracker.last_update["frame"] == index - start + 1:
            report = update_report(tracker, ground_truth[start:], tracker.last_update)
            updates.append(report)
            if show_updates:
                print(format_update(report), flush=True)
    boxes = np.asarray(boxes)
    valid = sequence.visible[start:end]
    ious = metrics.iou(boxes[valid], ground_truth[start:end][valid])
    centre_error, size_error = location_and_size_errors(boxes[valid], ground_truth[start:end][valid])
    frame_ious = _ious(boxes[1:], ground_truth[start + 1 : end])
    low = frame_ious < LOW_IOU
    stored = np.asarray(stored, dtype=bool)
    result = {
        "start": start, "frames": int(end - start), "auc": metrics.success_auc(ious),
        "stored": int(stored.sum()), "stored_low": float(low[stored].mean()) if stored.any() else 0.0,
        "frames_low": float(low.mean()) if len(low) else 0.0, "updates": updates,
        "centre_error": centre_error, "size_error": size_error,
        "per_frame": {"iou": frame_ious.round(4).tolist(), "probability": np.round(probability, 4).tolist(),
                      "relative": np.round(relative, 4).tolist(), "psr": np.round(psr, 4).tolist(),
                      "stored": stored.tolist()},
    }
    for name, values in (("probability", probability), ("relative", relative), ("psr", psr)):
        passed = np.asarray(values) > tau
        result[f"gate_{name}"] = {"stored": int(passed.sum()),
                                  "stored_low": float(low[passed].mean()) if passed.any() else 0.0}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mlt_plugin.diagnose", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", help="sequence folders (default: the select half of the validation split)")
    parser.add_argument("--half", choices=["select", "report"], default="select", help="without PATHS: this half")
    parser.add_argument("--params", nargs="+", default=["default"], help="parameter sets, NAME[@key=value,...]")
    parser.add_argument("--weights", help="weights for the meta-learner variants (default: shipped)")
    parser.add_argument("--starts", type=int, default=1, help="starts per sequence (0, L/n, 2L/n, ...)")
    parser.add_argument("--frames", type=int, help="frames per start at most")
    parser.add_argument("--updates", action="store_true", help="print every update's numbers")
    parser.add_argument("--precision", default="fp32", help="search conv1-4 precision (default: fp32, the reference)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="sequence names to keep")
    parser.add_argument("--json", help="write all numbers to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.paths:
        sequences = [s for path in args.paths for s in load_sequences(path)]
    else:
        from mlt_plugin.training.split import validation_sequences

        sequences = validation_sequences(half=args.half)
    if args.only:
        sequences = [s for s in sequences if s.name in args.only]
    results = {}
    for spec in args.params:
        tracker = make_tracker(spec, args.weights, args.precision)
        tau = tracker.params.confidence_threshold
        results[spec] = {}
        for sequence in sequences:
            runs = []
            for start in start_frames(sequence, args.starts):
                started = time.time()
                print(f"{spec} {sequence.name} from frame {start}:", flush=True)
                r = run_start(tracker, sequence, start, args.frames, args.updates, tau)
                r["seconds"] = time.time() - started
                runs.append(r)
                print(f"  AUC {r['auc']:.3f} over {r['frames']} frames ({r['frames'] / r['seconds']:.1f} fps); "
                      f"centre error {r['centre_error']:.2f} target sizes, size error {r['size_error']:.2f}; "
                      f"stored {r['stored']} ({r['stored_low']:.0%} IoU<{LOW_IOU}; {r['frames_low']:.0%} of all frames); "
                      f"gate probability>{tau}: {r['gate_probability']['stored']} ({r['gate_probability']['stored_low']:.0%}), "
                      f"relative>{tau}: {r['gate_relative']['stored']} ({r['gate_relative']['stored_low']:.0%}), "
                      f"psr>{tau}: {r['gate_psr']['stored']} ({r['gate_psr']['stored_low']:.0%})", flush=True)
            results[spec][sequence.name] = runs
    print("\nmean AUC over starts")
    names = [s.name for s in sequences]
    print(f"{'sequence':14s}" + "".join(f"{spec[:24]:>26s}" for spec in results))
    for name in names:
        print(f"{name:14s}" + "".join(f"{np.mean([r['auc'] for r in results[spec][name]]):26.3f}" for spec in results))
    print(f"{'mean':14s}" + "".join(f"{np.mean([np.mean([r['auc'] for r in results[spec][n]]) for n in names]):26.3f}"
                                    for spec in results))
    for spec in results:
        runs = [r for n in names for r in results[spec][n]]
        stored = sum(r["stored"] for r in runs)
        low = sum(r["stored"] * r["stored_low"] for r in runs)
        print(f"{spec}: memory stored {stored} patches, {low / max(stored, 1):.1%} with IoU<{LOW_IOU}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
