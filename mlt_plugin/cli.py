"""The `mlt` command: track, eval, train, bench, and toolkit set-up helpers."""
import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def _add_track(subparsers):
    parser = subparsers.add_parser(
        "track",
        help="track one sequence folder or video (default: the built-in demo sequence)",
        description="PATH: a sequence folder in OTB, VOT, LaSOT, GOT-10k, UAV123 or UAVDT layout (first box from its "
        "ground truth, AUC printed at the end), or a video file (--box required). No PATH: a generated demo sequence.",
    )
    parser.add_argument("path", nargs="?", help="sequence folder or video file")
    parser.add_argument("--box", help="initial box x,y,w,h (0-based pixels); overrides the ground truth")
    parser.add_argument("--params", default="default", help="parameter set: default, mt, mt_ft, fast")
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
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


def _load_target(path):
    from mlt_plugin.demo import demo_sequence
    from mlt_plugin.sequences import VIDEO_SUFFIXES, load_sequence, load_video

    if path is None:
        return demo_sequence()
    if not Path(path).exists():
        raise FileNotFoundError(f"no such sequence folder or video: {path}")
    if Path(path).is_file() and Path(path).suffix.lower() in VIDEO_SUFFIXES:
        return load_video(path)
    return load_sequence(path)


def run_track(args):
    from tqdm import tqdm

    from mlt_plugin.evaluation import run_sequence, score
    from mlt_plugin.params import load_parameters
    from mlt_plugin.tracking.tracker import MLT

    sequence = _load_target(args.path)
    if args.box:
        sequence.boxes[0] = _parse_box(args.box)
    if not np.isfinite(sequence.boxes[0]).all():
        raise ValueError(f"{args.path}: no initial box in the ground truth; give one with --box x,y,w,h")
    params = load_parameters(args.params)
    if args.device:
        params.device = args.device
    if args.weights:
        params.weights = args.weights
    tracker = MLT(params)
    count = len(sequence) if args.frames is None else min(args.frames, len(sequence))
    video = {}
    progress = tqdm(total=count, desc=f"MLT[{args.params}] {sequence.name}", unit="frame")

    def on_frame(index, image, box):
        progress.update()
        if args.save_video:
            video["writer"] = _draw(video.get("writer"), args.save_video, image, box, sequence.boxes[index])

    started = time.perf_counter()
    boxes, seconds = run_sequence(tracker, sequence, count, on_frame)
    total = time.perf_counter() - started
    progress.close()
    if "writer" in video:
        video["writer"].release()
    tracker_seconds = seconds.sum()
    print(f"{sequence.name}: {count} frames, {count / total:.1f} fps end to end, "
          f"{count / max(tracker_seconds, 1e-9):.1f} fps tracker only ({tracker.device})")
    has_truth = np.isfinite(sequence.boxes[1:count]).all(1).any()
    if has_truth:
        result = score(boxes, sequence.boxes, sequence.visible)
        print(f"success AUC {result['auc']:.3f}   precision@20px {result['precision20']:.3f}")
    if args.out:
        np.savetxt(args.out, boxes, fmt="%.2f", delimiter=",")
        print(f"boxes written to {args.out}")
    if args.save_video:
        print(f"video written to {args.save_video}")


def _draw(writer, path, image, box, truth):
    import cv2

    frame = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if writer is None:
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (frame.shape[1], frame.shape[0]))
        if not writer.isOpened():
            raise ValueError(f"cannot open {path} for writing a video")
    for rect, colour in ((truth, (0, 0, 255)), (box, (0, 255, 0))):
        if np.isfinite(rect).all():
            x, y, w, h = (int(round(v)) for v in rect)
            cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2)
    writer.write(frame)
    return writer


def _add_eval(subparsers):
    parser = subparsers.add_parser(
        "eval",
        help="one-pass evaluation: success AUC, precision@20 and fps per sequence and overall",
        description="PATHS: sequence folders or benchmark roots in any supported layout "
        "(default: the validation split of ../shared/data).",
    )
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--params", nargs="+", default=["default"], help="parameter sets to compare")
    parser.add_argument("--mil", action="store_true", help="also run OpenCV's TrackerMIL as a classical reference")
    parser.add_argument("--workers", type=int, default=1, help="sequences tracked in parallel processes")
    parser.add_argument("--frames", type=int, help="only the first N frames of each sequence")
    parser.add_argument("--device", help="cpu, cuda, cuda:N")
    parser.add_argument("--out", default="results/eval", help="folder for results.json and the plots")
    parser.set_defaults(func=run_eval)


def run_eval(args):
    from mlt_plugin.evaluation import evaluate, save_report, table
    from mlt_plugin.params import load_parameters
    from mlt_plugin.sequences import load_sequences
    from mlt_plugin.training.split import validation_sequences

    for name in args.params:
        load_parameters(name)  # fail now on an unknown name, not inside a worker
    sequences = [s for path in args.paths for s in load_sequences(path)] if args.paths else validation_sequences()
    if not sequences:
        raise ValueError(f"no sequences found in {args.paths}")
    trackers = list(args.params) + (["mil"] if args.mil else [])
    print(f"{len(sequences)} sequences, trackers: {', '.join(trackers)}")
    done = []

    def progress(name, seq_name, result):
        done.append(seq_name)
        print(f"[{len(done)}/{len(sequences) * len(trackers)}] {name:>8} {seq_name:<16} AUC {result['auc']:.3f}",
              flush=True)

    results = evaluate(sequences, trackers, args.workers, args.frames, args.device, progress)
    print(table(results))
    print(f"report: {save_report(results, args.out)} (+ success_plot.png, precision_plot.png)")


def build_parser():
    from mlt_plugin import bench
    from mlt_plugin.training import cli as train_cli

    parser = argparse.ArgumentParser(prog="mlt", description="MLT: real-time meta-learning visual tracker")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_track(subparsers)
    _add_eval(subparsers)
    from mlt_plugin.toolkits import pytracking_install, vot_setup

    for module in (train_cli, bench, vot_setup, pytracking_install):
        module.add_parser(subparsers)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args) or 0
    except (ValueError, FileNotFoundError) as err:
        print(f"mlt {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
