"""Refactoring keeps the numbers: `mlt eval` on two short real sequences, both protocols, for the paper
network's sets, gives the per-sequence scores stored in tests/data/eval_numbers.json.

The stored file was written by this module's ``measure`` from the code before the evaluation package
existed (``python tests/test_same_numbers.py --write`` writes it anew, only when a change of numbers is
intended). fp32 on one thread: the same arithmetic on every run.
"""
import json
import sys
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
STORED = Path(__file__).resolve().parent / "data" / "eval_numbers.json"
SEQUENCES = [DATA / "otb" / "Bird2", DATA / "vot" / "bolt1"]
PARAMS = ["paper", "paper_mt"]
FRAMES = 25
KEYS = {"one-pass": ("success_score", "precision_score", "normalized_precision_score", "success_rate"),
        "restart": ("mean_overlap", "accuracy", "failures", "on_target")}
REPORT = {"one-pass": "results.json", "restart": "restart.json"}


def measure(out: Path) -> dict:
    """{protocol: {tracker: {sequence: {key: value}}}} of `mlt eval` on SEQUENCES."""
    from mlt_plugin.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        numbers = {}
        for protocol in KEYS:
            folder = out / protocol
            code = main(["eval", *map(str, SEQUENCES), "--params", *PARAMS, "--frames", str(FRAMES),
                         "--device", "cpu", "--precision", "fp32", "--protocol", protocol, "--out", str(folder)])
            assert code == 0
            perf = json.loads((folder / REPORT[protocol]).read_text())
            numbers[protocol] = {name: {seq: {k: entry[k] for k in KEYS[protocol]}
                                        for seq, entry in perf[name]["seq_wise"].items()} for name in perf}
        return numbers
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(not all(p.is_dir() for p in SEQUENCES), reason=f"needs {SEQUENCES[0]} and {SEQUENCES[1]}")
def test_eval_gives_the_stored_per_sequence_numbers(tmp_path):
    stored = json.loads(STORED.read_text())
    measured = measure(tmp_path)
    assert measured.keys() == stored.keys()
    for protocol, trackers in stored.items():
        assert measured[protocol].keys() == trackers.keys()
        for name, sequences in trackers.items():
            assert measured[protocol][name].keys() == sequences.keys()
            for seq, entry in sequences.items():
                for key, value in entry.items():
                    assert measured[protocol][name][seq][key] == pytest.approx(value, abs=1e-9), (protocol, name, seq, key)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        STORED.write_text(json.dumps(measure(Path(tmp)), indent=1) + "\n")
    print(f"written: {STORED}")
