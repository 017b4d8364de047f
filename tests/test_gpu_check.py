"""The device check (tools/gpu_check.py) on the CPU, and the tracking changes it measures on a GPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlt_plugin import MLT
from mlt_plugin.bench import ping_pong
from mlt_plugin.demo import demo_sequence
from mlt_plugin.params import cpu_has_bf16, load_parameters

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_runs_on_cpu_and_names_every_part(tmp_path):
    """Every part runs and passes on the CPU, with small counts (the defaults are the GPU's); exit code 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "tools/gpu_check.py", "--device", "cpu", "--out", str(tmp_path), "--params", "paper",
               "lite_mt_ft", "--frames", "3", "--compare-frames", "3", "--train-steps", "2", "--train-batch", "2",
               "--search-size", "135", "--workers", "0", "--ddp-steps", "2", "--eval-frames", "5"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    assert set(report["parts"]) == {"install", "tracking", "training", "ddp", "eval"}
    assert report["pass"] and all(part["pass"] for part in report["parts"].values())
    tracking = report["parts"]["tracking"]
    for key in ("paper fp32", "lite_mt_ft fp32"):
        row = tracking[key]
        assert row["frames_timed"] == 3 and row["updates_in_warmup"] >= 1 and row["finite"]
        assert row["max_logit_diff_vs_cpu_fp32"] == 0 and row["min_iou_vs_cpu_fp32"] > 0.999
    assert tracking["paper fp16"]["skipped"]  # CUDA only, named as such
    for key in ("matching amp=False", "matching amp=True", "meta amp=False", "meta amp=True"):
        row = report["parts"]["training"][key]
        assert row["steps"] == 2 and row["resumed_to"] == 3 and row["finite_losses"] and 0 <= row["data_wait_share"] <= 1
    assert report["parts"]["ddp"]["gloo"]["params_differing"] == []


def test_a_failed_part_fails_the_check(tmp_path):
    """A part that raises is reported with its error and makes the exit code non-zero."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "tools/gpu_check.py", "--device", "cpu", "--out", str(tmp_path), "--params",
               "no_such_set", "--frames", "1", "--parts", "tracking"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result.returncode == 1 and not report["pass"] and "error" in report["parts"]["tracking"]


def test_the_tracker_leaves_cudnn_benchmark_alone(quiet_untrained):
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        params = load_parameters("paper")
        params.device = "cpu"
        MLT(params)
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 (emulated bf16 is too slow for a test)")
def test_reduced_precision_casts_the_extractor_once(quiet_untrained, monkeypatch):
    """bf16 (fp16 on CUDA alike): the search crops go through a bf16 channels-last copy of the extractor,
    without autocast at every frame, and the logits stay close to fp32's."""
    demo = demo_sequence(num_frames=3)
    logits = {}
    for precision in ("fp32", "bf16"):
        params = load_parameters("paper")
        params.device, params.precision = "cpu", precision
        tracker = MLT(params)
        tracker.initialize(demo.frame(0), demo.boxes[0])
        if precision == "bf16":
            weight = next(tracker.search_backbone.parameters())
            assert weight.dtype == torch.bfloat16 and next(tracker.net.backbone.parameters()).dtype == torch.float32
            monkeypatch.setattr(torch, "autocast", None)  # any autocast would fail now
        with torch.inference_mode():
            logits[precision] = tracker.matcher(tracker._search_conv4(tracker._search_crops(demo.frame(1)))).float()
        tracker.track(demo.frame(1))
    assert (logits["bf16"] - logits["fp32"]).abs().max() < 0.1 * logits["fp32"].abs().max()


def test_ping_pong_plays_a_short_sequence_forward_and_back():
    sequence = demo_sequence(num_frames=4)
    longer = ping_pong(sequence, 9)
    order = [0, 1, 2, 3, 2, 1, 0, 1, 2]
    assert len(longer) == 9
    assert all(np.array_equal(longer.frame(i), sequence.frame(k)) for i, k in enumerate(order))
    np.testing.assert_array_equal(longer.boxes, sequence.boxes[order])
