"""The `mlt` command: track, eval, diagnose, train, bench, and toolkit set-up helpers."""
import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from mlt_plugin.params import parameter_set_names

PARAMETER_SETS = ", ".join(parameter_set_names())
RESTART_WHY = ("one early loss zeroes a whole one-pass sequence, so on the select half its paired interval "
               "is wide; restarts score every frame and separate losing the target (failures) from the box drawn "
               "(accuracy), which gave the narrowest paired interval per CPU minute (docs/results.md, 'Choosing').")
PRECISION_HELP = "search features precision: auto (default: int8 on x86 CPUs, fp16 on CUDA), fp32, int8, bf16, fp16"


def _add_track(subparsers):
    parser = subparsers.add_parser(
        "track",
        help="track one sequence folder or video (default: the built-in demo sequence)",
        description="PATH: a sequence folder in OTB, VOT, LaSOT, GOT-10k, UAV123 or UAVDT layout (first box from its "
        "ground truth, AUC printed at the end), or a video file (--box required). No PATH: a generated demo sequence.",
    )
    parser.add_argument("path", nargs="?", help="sequence folder or video file")
    parser.add_argument("--box", help="initial box x,y,w,h (0-based pixels); overrides the ground truth")
    parser.add_argument("--params", default="default",
                        help=f"parameter set, NAME[@key=value,...]: {PARAMETER_SETS} (default: default)")
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--precision", help=PRECISION_HELP)
    parser.add_argument("--frames", type=int, help="track only the first N frames")
    parser.add_argument("--out", help="write the boxes, one 'x,y,w,h' line (0-based) per frame")
    parser.add_argument("--save-video", help="write a video with the tracked (green) and true (red) boxes")
    parser.set_defaults(func=run_track)


def _parse_box(text):
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"--box must be x,y,w,h (4 comma-separated numbers), got {text!r}")
    return np.array(values)


def run_track(args):
    from tqdm import tqdm

    from mlt_plugin.build import build_tracker
    from mlt_plugin.demo import load_target
    from mlt_plugin.evaluation.running import run_sequence
    from mlt_plugin.evaluation.scoring import score

    sequence = load_target(args.path)
    if args.box:
        sequence.boxes[0] = _parse_box(args.box)
    if not np.isfinite(sequence.boxes[0]).all():
        raise ValueError(f"{args.path}: no initial box in the ground truth; give one with --box x,y,w,h")
    tracker = build_tracker(args.params, device=args.device, weights=args.weights, precision=args.precision)
    count = len(sequence) if args.frames is None else min(args.frames, len(sequence))
    video = {}
    progress = tqdm(total=count, desc=f"MLT[{args.params}] {sequence.name}", unit="frame")

    def on_frame(index, image, box):
        progress.update()
        if args.save_video:
            video["writer"] = _draw(video.get("writer"), args.save_video, image, box, sequence.boxes[index],
                                    sequence.fps or 30.0)

    started = time.perf_counter()
    boxes, seconds, _ = run_sequence(tracker, sequence, count, hook=on_frame)
    total = time.perf_counter() - started
    progress.close()
    if "writer" in video:
        video["writer"].release()
    print(f"{sequence.name}: {count} frames, {count / total:.1f} fps end to end, "
          f"{count / max(seconds.sum(), 1e-9):.1f} fps tracker only ({tracker.device})")
    if np.isfinite(sequence.boxes[1:count]).all(1).any():
        result = score(boxes, sequence)
        print(f"success AUC {result['success_score']:.3f}   precision@20px {result['precision_score']:.3f}")
    if args.out:
        np.savetxt(args.out, boxes, fmt="%.2f", delimiter=",")
        print(f"boxes written to {args.out}")
    if args.save_video:
        print(f"video written to {args.save_video} ({sequence.fps or 30.0:g} fps, the source's frame rate"
              + ("" if sequence.fps else " unknown: 30 assumed") + ")")


def _draw(writer, path, image, box, truth, fps):
    import cv2

    frame = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if writer is None:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
        if not writer.isOpened():
            raise ValueError(f"cannot open {path} for writing a video")
    for rect, colour in ((truth, (0, 0, 255)), (box, (0, 255, 0))):
        if np.isfinite(rect).all():
            x, y, w, h = (int(round(v)) for v in rect)
            cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
    writer.write(frame)
    return writer


def _add_eval(subparsers):
    from mlt_plugin.build import MODELS_HELP

    parser = subparsers.add_parser(
        "eval",
        help="evaluation beside the peers: one-pass (success AUC, precision@20) or restart (overlap, failures, EAO)",
        description="PATHS: sequence folders or benchmark roots in any supported layout "
        "(default: the validation split of ../shared/data). Per-sequence results are saved under "
        "OUT/results/ and reused by a rerun (resume). Choose between variants with --protocol restart: "
        f"{RESTART_WHY}",
    )
    parser.add_argument("--protocol", choices=["one-pass", "restart"], default="one-pass",
                        help="one-pass: OTB's, initialise once (success AUC, P@20); restart: VOT's supervised "
                        "experiment, re-initialised on the ground truth 5 frames after a failure (IoU 0), "
                        "scored by mean overlap, accuracy, failures per 100 frames and EAO (default: one-pass)")
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--params", nargs="+", default=["default"],
                        help=f"parameter sets to compare, NAME[@key=value,...] (e.g. mt@precision=fp32): {PARAMETER_SETS} "
                        "(default: default)")
    parser.add_argument("--mil", action="store_true", help="also run OpenCV's TrackerMIL as a classical reference")
    parser.add_argument("--peers", action="store_true",
                        help="also run OpenCV's TrackerNano (NanoTrack v2), TrackerVit (VitTrack) and, with "
                        "opencv-contrib-python, CSRT; one that cannot be built is skipped with its reason")
    parser.add_argument("--models", metavar="DIR", help=MODELS_HELP)
    parser.add_argument("--starts", type=int, default=1,
                        help="runs per sequence: the exact first box + K-1 of OTB's SRE starts (shifted/scaled boxes)")
    parser.add_argument("--temporal-starts", type=int, default=0,
                        help="J more runs per sequence from later frames (OTB's TRE: half-way, a quarter, three "
                        "quarters, ...), initialised on the ground truth there and scored from there")
    parser.add_argument("--workers", type=int, default=1, help="(tracker, sequence, start) items in parallel processes")
    parser.add_argument("--shard", help="i/n: only sequences i, i+n, ... (split across machines; then rerun to report)")
    parser.add_argument("--frames", type=int, help="only the first N frames of each sequence")
    parser.add_argument("--device", help="cpu, cuda, cuda:N")
    parser.add_argument("--precision", help=PRECISION_HELP)
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.add_argument("--data", help="shared data folder for the default validation split (default: ../shared/data)")
    parser.add_argument("--half", choices=["select", "report"],
                        help="without PATHS: one fixed half of the validation split (choices on select, claims on report)")
    parser.add_argument("--out", default="results/eval", help="folder for results.json, the plots and results/")
    parser.set_defaults(func=run_eval)


def run_eval(args):
    from mlt_plugin.build import available_peers, parse_variant
    from mlt_plugin.evaluation import report, scoring, statistics
    from mlt_plugin.evaluation.running import TrackerSpec, run
    from mlt_plugin.files import write_text_atomic
    from mlt_plugin.params import load_parameters
    from mlt_plugin.sequences import load_sequences
    from mlt_plugin.training.split import validation_sequences

    for name in args.params:
        load_parameters(parse_variant(name)[0])  # fail now on an unknown name, not inside a worker
    if args.paths and args.half:
        raise ValueError("--half picks a half of the validation split: give either PATHS or --half")
    sequences = [s for path in args.paths for s in load_sequences(path)] if args.paths else validation_sequences(args.data, half=args.half)
    if not sequences:
        raise ValueError(f"no sequences found in {args.paths}")
    overrides = {"device": args.device, "weights": args.weights, "precision": args.precision}
    trackers = [TrackerSpec(name, name, {k: v for k, v in overrides.items() if v}) for name in args.params]
    trackers += [TrackerSpec("mil", "mil")] if args.mil else []
    if args.peers:  # checked here, before the run: a peer that cannot be built is left out with one line
        models = {"models": args.models} if args.models else {}
        trackers += [TrackerSpec(label, name, models) for name, label in available_peers(args.models).items()]
    frames = f"first{args.frames}" if args.frames else "all"
    restart = args.protocol == "restart"
    result_dir = Path(args.out) / "results" / (f"restart-{frames}" if restart else frames)
    results = run(trackers, sequences, result_dir, args.starts, args.workers, args.shard, args.frames,
                  protocol=args.protocol, temporal_starts=args.temporal_starts)
    if args.shard:
        print(f"shard done; run again without --shard (same --out) once every shard's results are in {result_dir}")
        return 0
    perf = (scoring.restart_performance if restart else scoring.performance)(results, sequences)
    print((report.restart_table if restart else report.table)(perf))
    if len(perf) > 1:
        print(statistics.differences(perf, args.protocol))  # also stored in the JSON as overall["paired_difference"]
    if restart:
        path = Path(args.out) / "restart.json"
        write_text_atomic(path, json.dumps(perf, indent=1))
        print(f"report: {path}")
    else:
        path = report.report(perf, args.out, "OPE", "results.json")
        print(f"report: {path} (+ success_plots.png, precision_plots.png, norm_precision_plots.png)")


def _add_diagnose(subparsers):
    parser = subparsers.add_parser(
        "diagnose", help="what the meta-learner does while tracking: its updates and the memory gate, per start",
        description="Tracks PATHS (default: the select half of the validation split) with each parameter set, "
        "prints per start the memory's and each gate measure's share of low-IoU frames (with --updates every meta "
        "update's numbers; mlt_plugin/diagnose.py says which), then the success table of `mlt eval`.")
    parser.add_argument("paths", nargs="*", help="sequence folders")
    parser.add_argument("--params", nargs="+", default=["default"],
                        help="parameter sets, NAME[@key=value,...] (e.g. default@confidence=psr, default@weights=FILE)")
    parser.add_argument("--temporal-starts", type=int, default=0, help="J more starts per sequence (OTB's TRE)")
    parser.add_argument("--frames", type=int, help="only the first N frames of each sequence")
    parser.add_argument("--updates", action="store_true", help="print every meta update's numbers")
    parser.add_argument("--precision", default="fp32", help="search features precision (default: fp32, the reference)")
    parser.add_argument("--json", help="write every start's numbers and updates to this file")
    parser.set_defaults(func=run_diagnose)


def run_diagnose(args):
    from mlt_plugin.diagnose import UpdateReport
    from mlt_plugin.evaluation import report, running, scoring, starts
    from mlt_plugin.sequences import load_sequences
    from mlt_plugin.training.split import validation_sequences

    paths = args.paths
    sequences = [s for path in paths for s in load_sequences(path)] if paths else validation_sequences(half="select")
    hooks = []  # (tracker name, sequence, start, its hook) per item, in the runner's order

    def hook(name, sequence, start, tracker):
        hooks.append((name, sequence, start, UpdateReport(tracker, sequence.boxes, args.updates)))
        return hooks[-1][-1]

    specs = [running.TrackerSpec(name, name, {"device": "cpu", "precision": args.precision}) for name in args.params]
    results = running.run(specs, sequences, max_frames=args.frames, temporal_starts=args.temporal_starts, hook=hook)
    ids, details = starts.start_ids(1, args.temporal_starts), {}
    for name, sequence, start, item in hooks:
        boxes = results[name][sequence.name][ids.index(start)][0]
        summary = {"success_score": scoring.score(boxes, sequence)["success_score"], **item.summary(boxes)}
        print(f"{name} {sequence.name} from frame {item.first}: "
              + ", ".join(f"{k} {np.round(v, 3).tolist()}" for k, v in summary.items()))
        details.setdefault(name, {}).setdefault(sequence.name, []).append({**summary, "updates": item.updates})
    print(report.table(scoring.performance(results, sequences)))
    if args.json:
        Path(args.json).write_text(json.dumps(details, indent=1))


def build_parser():
    from mlt_plugin import bench
    from mlt_plugin.toolkits import pytracking_install, vot_setup
    from mlt_plugin.training import cli as train_cli

    parser = argparse.ArgumentParser(prog="mlt", description="MLT: real-time meta-learning visual tracker")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_track(subparsers)
    _add_eval(subparsers)
    _add_diagnose(subparsers)
    for module in (train_cli, bench, vot_setup, pytracking_install):
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command in ("track", "eval", "bench", "train"):
        import torch

        # Fixed crop shapes: cuDNN picks its fastest kernels once. Set by the command, not by the tracker,
        # which must not change a global setting of the program that uses it.
        torch.backends.cudnn.benchmark = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args) or 0
    except (ValueError, FileNotFoundError) as err:
        print(f"mlt {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
