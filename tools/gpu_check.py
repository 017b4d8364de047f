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
from pathlib import Path

import torch

from train_speed import train_speed

ROOT = Path(__file__).resolve().parent.parent


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
