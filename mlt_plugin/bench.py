"""`mlt bench`: fps end to end and per stage for several configurations, measured side by side in one run."""
import json
import resource
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from mlt_plugin.build import build_tracker
from mlt_plugin.params import cpu_has_bf16, resolve_device
from mlt_plugin.demo import load_target

STAGES = ("decode", "crop", "forward", "update", "postprocess")


def _configs(device):
    configs = [("default fp32", "default", {"autocast": False})]
    if device.type == "cuda" or cpu_has_bf16():
        configs.append((f"default {'fp16' if device.type == 'cuda' else 'bf16'}", "default", {"autocast": True}))
    else:  # emulated bf16 is many times slower than fp32: "auto" never picks it, so it is not worth timing
        print("  default bf16: skipped, this CPU has no native bf16 (AVX512-BF16 / AMX)", flush=True)
    configs += [("fast (1 scale)", "fast", {}), ("mt", "mt", {}), ("OpenCV MIL", "mil", None)]
    return configs


def _rss_mib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_one(name, overrides, sequence, frames, device):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker = build_tracker(name) if overrides is None else build_tracker(name, device=str(device), **overrides)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tracker.initialize(sequence.frame(0), sequence.boxes[0])
    tracker.track(sequence.frame(1))  # warm-up frame, not timed
    if hasattr(tracker, "stage_seconds"):
        tracker.stage_seconds.clear()
    decode = 0.0
    started = time.perf_counter()
    for index in range(2, frames + 2):
        tic = time.perf_counter()
        image = sequence.frame(index % len(sequence))
        decode += time.perf_counter() - tic
        tracker.track(image)
    total = time.perf_counter() - started
    stages = dict(getattr(tracker, "stage_seconds", {}))
    stages["decode"] = decode
    row = {
        "config": name if overrides is None else name,
        "fps": frames / total,
        "ms_per_frame": {s: 1000 * stages.get(s, 0.0) / frames for s in STAGES},
        "rss_mib": _rss_mib(),
    }
    if device.type == "cuda":
        row["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def run_bench(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    sequence = load_target(args.path)
    frames = args.frames
    rows = []
    for label, name, overrides in _configs(device):
        row = bench_one(name, overrides, sequence, frames, device)
        row["config"] = label
        rows.append(row)
        print(f"  {label}: {row['fps']:.1f} fps", flush=True)
    base = rows[0]["fps"]
    header = f"{'config':<18}{'fps':>8}{'x fp32':>8}" + "".join(f"{s:>12}" for s in STAGES) + f"{'RSS MiB':>9}"
    print(f"\n{sequence.name}, {frames} frames, device {device}, {torch.get_num_threads()} threads (ms per frame by stage)")
    print(header)
    for row in rows:
        stages = "".join(f"{row['ms_per_frame'][s]:>12.2f}" for s in STAGES)
        print(f"{row['config']:<18}{row['fps']:>8.1f}{row['fps'] / base:>8.2f}{stages}{row['rss_mib']:>9.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the run: {peak:.0f} MiB")
    report = {"sequence": sequence.name, "frames": frames, "device": str(device),
              "threads": torch.get_num_threads(), "peak_rss_mib": peak, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"JSON written to {args.json}")
    return 0


def add_parser(subparsers):
    parser = subparsers.add_parser("bench", help="speed of MLT configurations and OpenCV MIL, side by side")
    parser.add_argument("path", nargs="?", help="sequence folder or video (default: the demo sequence)")
    parser.add_argument("--frames", type=int, default=100, help="timed frames per configuration")
    parser.add_argument("--device", help="cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", help="write the table as JSON here")
    parser.set_defaults(func=run_bench)
