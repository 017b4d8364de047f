"""`mlt bench`: fps end to end and per stage, and the success AUC of the same frames, for every backbone of
the registry (paper, lite) at every precision this device supports, their MLT-mt and the one-scale preset at auto,
OpenCV MIL and the peers (NanoTrack, VitTrack, CSRT where they build), measured side by side in one run."""
import json
import resource
import time
import warnings
from pathlib import Path

import cv2
import torch

from mlt_plugin.build import MODELS_HELP, available_peers, build_tracker
from mlt_plugin.demo import load_target
from mlt_plugin.evaluation.running import run_sequence
from mlt_plugin.evaluation.scoring import score
from mlt_plugin.networks.extractors import EXTRACTORS
from mlt_plugin.networks.weights_io import UntrainedWeightsWarning, default_file
from mlt_plugin.params import cpu_has_bf16, load_parameters, parameter_set_names, resolve_device, resolve_precision
from mlt_plugin.sequences import Sequence

STAGES = ("decode", "crop", "forward", "update", "postprocess")


def _configs(device, models=None):
    """(label, tracker name, build_tracker overrides) for every precision this device supports, the presets,
    MIL and the peers that build here (the others skipped with their reason)."""
    from mlt_plugin.networks.int8 import int8_supported

    if device.type == "cuda":
        precisions = ["fp32", "fp16", "bf16"]
    else:
        precisions = ["fp32"] + ["int8"] * int8_supported()
        if cpu_has_bf16():
            precisions.append("bf16")
        else:  # emulated bf16 is many times slower than fp32: not worth timing
            print("  default bf16: skipped, this CPU has no native bf16 (AVX512-BF16 / AMX)", flush=True)
    auto = resolve_precision("auto", device)
    # Every backbone's parameter set (named as its extractor) at every precision, its MLT-mt at auto, and the
    # one-scale preset.
    families = [name for name in EXTRACTORS if name in parameter_set_names()]
    mlt = [(f"{family}{suffix} {p}", family + suffix, p) for family in families
           for suffix, family_precisions in (("", precisions), ("_mt", [auto])) for p in family_precisions]
    mlt += [(f"fast {auto}", "fast", auto)]
    # The box estimator a family does not use by default (the 3-scale search or the box head, where one ships
    # for it), at auto: both in one run.
    for family in families:
        other = "scale_search" if load_parameters(family).box_estimator == "head" else "head"
        if other == "scale_search" or Path(default_file(family, "box") or "").is_file():
            mlt.append((f"{family} {other} {auto}", f"{family}@box_estimator={other}", auto))
    configs = [(label, name, {"device": str(device), "precision": p}) for label, name, p in mlt]
    peers = [(label, name, {"models": models}) for name, label in available_peers(models).items()]
    return configs + [("OpenCV MIL", "mil", {})] + peers


def _rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _synchronized(update, device):
    """The tracker's update, returning once the GPU has done it: its time is billed to the update, not to the
    next frame's forward (whose copy of the logits to the CPU would wait for it)."""
    def run():
        update()
        torch.cuda.synchronize(device)
    return run


def ping_pong(sequence, length):
    """The sequence played forward, backward, forward... until ``length`` frames: a longer run with a
    continuous motion (and known boxes) when the sequence is shorter than the frames asked to time."""
    order = list(range(len(sequence))) + list(range(len(sequence) - 2, 0, -1))
    indices = [order[i % len(order)] for i in range(length)]
    return Sequence(f"{sequence.name} (forward and back, {length} frames)", [sequence.frames[i] for i in indices],
                    sequence.boxes[indices])


def bench_one(name, overrides, sequence, frames, device):
    """One configuration on frames 0..frames+1 in order, through the one run loop, so that the boxes can be
    scored; frames 0 (initialisation) and 1 warm up, untimed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = build_tracker(name, **overrides)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        if hasattr(tracker, "stage_seconds"):
            tracker.update = _synchronized(tracker.update, device)
    clock = {}

    def hook(index, image, box):
        if index == 1:  # the warm-up frame is done: time from here
            getattr(tracker, "stage_seconds", {}).clear()
            clock["start"] = time.perf_counter()

    boxes, seconds, _ = run_sequence(tracker, sequence, frames + 2, hook=hook)
    total = time.perf_counter() - clock["start"]
    stages = dict(getattr(tracker, "stage_seconds", {}))
    stages["decode"] = total - seconds[2:].sum()  # the timed frames' wall time outside the tracker's calls
    row = {
        "config": name,
        "fps": frames / total,
        "success_score": score(boxes, sequence)["success_score"],
        "ms_per_frame": {s: 1000 * stages.get(s, 0.0) / frames for s in STAGES},
        "rss_mib": _rss_mib(),
        "untrained": any(issubclass(w.category, UntrainedWeightsWarning) for w in caught),  # its score means nothing
    }
    if device.type == "cuda":
        row["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def run_bench(args):
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)  # OpenCV's trackers (and MLT's crops) on the same cores
    device = resolve_device(args.device)
    sequence = load_target(args.path)
    frames = args.frames
    if frames < 1 or len(sequence) < 3:
        raise ValueError(f"--frames {frames} on {sequence.name} of {len(sequence)} frames: mlt bench times at "
                         "least 1 frame, of a sequence of at least 3")
    if frames + 2 > len(sequence):  # never fewer frames timed than asked for
        sequence = ping_pong(sequence, frames + 2)
        print(f"  {sequence.name}", flush=True)
    rows = []
    for label, name, overrides in _configs(device, args.models):
        row = bench_one(name, overrides, sequence, frames, device)
        row["config"] = label
        rows.append(row)
        untrained = " (untrained weights: its success score means nothing)" if row["untrained"] else ""
        print(f"  {label}: {row['fps']:.1f} fps{untrained}", flush=True)
    base = rows[0]["fps"]
    nano = next((row["fps"] for row in rows if row["config"] == "NanoTrack"), None)  # the fast CPU tracker to beat
    header = (f"{'config':<18}{'fps':>8}{'x fp32':>8}" + (f"{'x NanoTrack':>12}" if nano else "") + f"{'AUC':>7}"
              + "".join(f"{s:>12}" for s in STAGES) + f"{'RSS MiB':>9}")
    print(f"\n{sequence.name}, {frames} frames, device {device}, {torch.get_num_threads()} threads (ms per frame by stage; AUC over its first {frames + 2} frames)")
    print(header)
    for row in rows:
        stages = "".join(f"{row['ms_per_frame'][s]:>12.2f}" for s in STAGES)
        ratio = f"{row['fps'] / nano:>12.2f}" if nano else ""
        print(f"{row['config']:<18}{row['fps']:>8.1f}{row['fps'] / base:>8.2f}{ratio}{row['success_score']:>7.3f}{stages}{row['rss_mib']:>9.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the run: {peak:.0f} MiB")
    report = {"sequence": sequence.name, "frames": frames, "device": str(device),
              "threads": torch.get_num_threads(), "peak_rss_mib": peak, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"JSON written to {args.json}")
    return 0


def add_parser(subparsers):
    parser = subparsers.add_parser("bench", help="speed of MLT configurations, OpenCV MIL and the peers (NanoTrack, "
                                   "VitTrack, CSRT), side by side")
    parser.add_argument("path", nargs="?", help="sequence folder or video (default: the demo sequence)")
    parser.add_argument("--frames", type=int, default=100, help="timed frames per configuration")
    parser.add_argument("--device", help="cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="CPU threads of torch and OpenCV")
    parser.add_argument("--models", metavar="DIR", help=MODELS_HELP)
    parser.add_argument("--json", help="write the table as JSON here")
    parser.set_defaults(func=run_bench)
