"""MLT's GPU numbers in one device call: tracker fps per precision, the CUDA tests, training steps/s.

On the GPU machine, from the repository root (no install needed, no data needed: the demo sequence):

    PYTHONPATH=. python3 tools/gpu_check.py --out "$OUT"

Writes OUT/bench.json (mlt bench: fps and per-stage ms for every precision), OUT/train_speed.json
(steps/s of the matching stage, eq. 6, and the meta stage, eq. 7, batch 8, synthetic inputs of the
real shapes) and OUT/tests.log. Test it on a CPU with `--device cpu --frames 5 --steps 2`.
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def train_speed(device, steps, amp):
    """Steps/s of both training stages on random inputs of the training shapes (batch 8, M' = 16)."""
    from mlt_plugin.networks.weights_io import DEFAULT_FILES
    from mlt_plugin.training.trainer import MatchingStage, MetaStage

    generator = torch.Generator().manual_seed(0)
    batch_size, num_reg = 8, 16
    batches = {
        "matching": {
            "x": torch.rand(batch_size, 3, 127, 127, generator=generator) * 255,
            "z": torch.rand(batch_size, 3, 255, 255, generator=generator) * 255,
            "centers": torch.zeros(batch_size, 2),
        },
        "meta": {
            "x4": torch.rand(batch_size, 256, 8, 8, generator=generator),
            "z4": torch.rand(batch_size * num_reg, 256, 24, 24, generator=generator),
            "centers": torch.zeros(batch_size * num_reg, 2),
        },
    }
    stages = {"matching": MatchingStage(192, device), "meta": MetaStage(DEFAULT_FILES["mlt"], device, num_reg=num_reg)}
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    results = {}
    for name, stage in stages.items():
        module = stage.trainable().train()
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
        batch = {k: v.to(device) for k, v in batches[name].items()}

        def step():
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                loss = stage.loss(module, batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss

        step()  # warm-up: kernels chosen, memory allocated
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            loss = step()
        loss.item()  # waits for the device
        seconds = time.perf_counter() - started
        results[name] = {"steps_per_s": steps / seconds, "s_per_step": seconds / steps, "amp": amp}
        print(f"train {name:9s} amp={amp}: {steps / seconds:.2f} steps/s", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/gpu_check", help="folder for the results")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=300, help="timed frames per tracker configuration")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per stage")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {device} ({name})", flush=True)

    from mlt_plugin.cli import main as mlt

    mlt(["bench", "--device", args.device, "--frames", str(args.frames), "--json", str(out / "bench.json")])
    speed = {"device": name, "torch": torch.__version__}
    for amp in (False, True):
        speed[f"amp={amp}"] = train_speed(device, args.steps, amp)
    (out / "train_speed.json").write_text(json.dumps(speed, indent=1))
    # The tests that run without the benchmark toolkits (the GPU image has none) and without ../shared.
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_networks.py", "tests/test_tracker.py"],
                           cwd=ROOT, capture_output=True, text=True)
    (out / "tests.log").write_text(tests.stdout + tests.stderr)
    print(tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else tests.stderr[-2000:], flush=True)
    return tests.returncode


if __name__ == "__main__":
    sys.exit(main())
