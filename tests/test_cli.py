"""The `mlt` command as a user runs it."""
import json

import numpy as np
import pytest

from mlt_plugin.cli import main


def test_track_demo_writes_boxes_and_prints_auc(tmp_path, capsys, quiet_untrained):
    out = tmp_path / "boxes.txt"
    assert main(["track", "--frames", "6", "--params", "mt", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "success AUC" in printed and "fps" in printed
    boxes = np.loadtxt(out, delimiter=",")
    assert boxes.shape == (6, 4) and np.isfinite(boxes).all()


def test_track_real_sequence_prints_auc(shared_data, capsys, quiet_untrained):
    assert main(["track", str(shared_data / "otb" / "Vase"), "--frames", "5", "--params", "mt"]) == 0
    assert "success AUC" in capsys.readouterr().out


def test_track_reports_bad_input_clearly(tmp_path, capsys):
    assert main(["track", str(tmp_path / "missing")]) == 2
    assert "no such sequence folder or video" in capsys.readouterr().err
    assert main(["track", "--box", "1,2,3"]) == 2
    assert "--box must be x,y,w,h" in capsys.readouterr().err
    assert main(["track", "--params", "nonsense"]) == 2
    assert "unknown parameter set 'nonsense'" in capsys.readouterr().err


def test_eval_compares_trackers_and_writes_a_report(shared_data, tmp_path, capsys, quiet_untrained):
    out = tmp_path / "eval"
    code = main(["eval", str(shared_data / "otb" / "Dog"), "--params", "mt", "--mil", "--frames", "4", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "mil AUC" in printed
    report = json.loads((out / "results.json").read_text())
    assert set(report) == {"mt", "mil"}
    assert report["mt"]["sequences"]["Dog"]["frames"] == 4
    assert 0 <= report["mil"]["overall"]["auc"] <= 1
    assert (out / "success_plot.png").stat().st_size > 0 and (out / "precision_plot.png").stat().st_size > 0


def test_bench_times_every_configuration_by_stage(tmp_path, quiet_untrained):
    out = tmp_path / "bench.json"
    assert main(["bench", "--frames", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    from mlt_plugin.networks.int8 import int8_supported

    configs = [row["config"] for row in report["rows"]]
    auto = "int8" if int8_supported() else "fp32"
    assert configs[0] == "default fp32" and {f"fast {auto}", f"mt {auto}", "OpenCV MIL"} <= set(configs)
    assert ("default int8" in configs) == int8_supported()
    for row in report["rows"]:
        assert row["fps"] > 0 and set(row["ms_per_frame"]) == {"decode", "crop", "forward", "update", "postprocess"}
        assert 0 <= row["auc"] <= 1
