"""The `mlt` command as a user runs it."""
import json
from pathlib import Path

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
    assert "overall" in printed and "mil AUC" in printed and "mil minus mt: " in printed  # its difference to mt
    report = json.loads((out / "results.json").read_text())
    assert set(report) == {"mt", "mil"}
    assert report["mt"]["seq_wise"]["Dog"]["frames"] == 4
    assert 0 <= report["mil"]["overall"]["success_score"] <= 1
    assert (out / "success_plots.png").stat().st_size > 0 and (out / "precision_plots.png").stat().st_size > 0
    assert main(["eval", str(shared_data / "otb" / "Dog"), "--params", "mt", "--frames", "4", "--out", str(out)]) == 0
    assert "0 to run, 1 already saved" in capsys.readouterr().out  # resumed from the saved result files


def test_eval_starts_report_the_spread_and_compose_with_workers(shared_data, tmp_path, capsys):
    from mlt_plugin.evaluation.starts import SRE_STARTS, start_box

    box = np.array([10.0, 20.0, 40.0, 20.0])
    assert np.allclose(start_box(box, 0), box)
    assert np.allclose(start_box(box, 1), [6.0, 20.0, 40.0, 20.0])  # centre shifted left by 10 % of w
    assert np.allclose(start_box(box, 3), [14.0, 22.0, 32.0, 16.0])  # scaled by 0.8 about the centre
    assert len(SRE_STARTS) == 12
    out = tmp_path / "eval"
    code = main(["eval", str(shared_data / "otb" / "Dog"), "--params", "mt", "--mil", "--starts", "3", "--workers", "2",
                 "--frames", "4", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    for name in ("mt", "mil"):
        entry = report[name]["seq_wise"]["Dog"]
        assert entry["starts"] == 3 and entry["success_score_min"] <= entry["success_score"] <= entry["success_score_max"]
        assert report[name]["overall"]["success_score_std"] >= 0
    saved = sorted(p.name for p in (out / "results" / "first4" / "mt").glob("*.txt"))
    assert saved == ["Dog.txt", "Dog_start1.txt", "Dog_start2.txt"]
    assert main(["eval", str(shared_data / "otb" / "Dog"), "--starts", "14", "--out", str(out)]) == 2
    assert "--starts must be 1..13" in capsys.readouterr().err


def test_track_uav123_native_layout_and_bad_data(shared_data, tmp_path, capsys, quiet_untrained):
    """UAV123 as released (configSeqs.m, no .json), a truncated ground truth and a corrupt frame: one line each."""
    import os

    root = tmp_path / "UAV123"
    (root / "anno").mkdir(parents=True)
    (root / "data_seq").mkdir()
    os.symlink(shared_data / "uav123" / "anno" / "UAV123_10fps", root / "anno" / "UAV123_10fps")
    os.symlink(shared_data / "uav123" / "data_seq" / "UAV123_10fps", root / "data_seq" / "UAV123_10fps")
    (root / "configSeqs.m").write_text(
        "seqUAV123_10fps={struct('name','group2_2','path','D:\\UAV123\\data_seq\\UAV123_10fps\\group2\\',"
        "'startFrame',303,'endFrame',352,'nz',6,'ext','jpg','init_rect',[0,0,0,0]),...\n"
        "struct('name','bike1','path','D:\\UAV123\\data_seq\\UAV123_10fps\\bike1\\','startFrame',1,"
        "'endFrame',1029,'nz',6,'ext','jpg','init_rect',[0,0,0,0])};\n")  # bike1 is not in this root: skipped
    assert main(["track", str(root / "data_seq" / "UAV123_10fps" / "group2"), "--frames", "3", "--params", "mt"]) == 0
    assert "group2_2: 3 frames" in capsys.readouterr().out

    seq = tmp_path / "Broken"
    (seq / "img").mkdir(parents=True)
    for i in range(1, 4):
        os.symlink(shared_data / "otb" / "Dog" / "img" / f"{i:04d}.jpg", seq / "img" / f"{i:04d}.jpg")
    (seq / "groundtruth_rect.txt").write_text("10,10,20,20\n11,11,20,20\n")
    assert main(["track", str(seq)]) == 2
    err = capsys.readouterr().err
    assert "groundtruth_rect.txt has 2 boxes for 3 frames" in err and len(err.strip().splitlines()) == 1
    (seq / "groundtruth_rect.txt").write_text("10,10,20,20\n" * 3)
    (seq / "img" / "0002.jpg").unlink()
    (seq / "img" / "0002.jpg").write_bytes(b"not a jpeg")
    assert main(["eval", str(seq), "--params", "mt", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err  # the progress bar shares stderr
    errors = [line for line in err.replace("\r", "\n").splitlines() if "error:" in line]
    assert len(errors) == 1 and "0002.jpg" in errors[0] and "Traceback" not in err


def test_bench_times_every_configuration_by_stage(tmp_path, quiet_untrained):
    out = tmp_path / "bench.json"
    assert main(["bench", "--frames", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    from mlt_plugin.networks.int8 import int8_supported

    configs = [row["config"] for row in report["rows"]]
    auto = "int8" if int8_supported() else "fp32"
    assert configs[0] == "paper fp32" and {f"fast {auto}", f"paper_mt {auto}", f"lite_mt {auto}", "OpenCV MIL"} <= set(configs)
    assert ("paper int8" in configs) == ("lite int8" in configs) == int8_supported()
    for row in report["rows"]:
        assert row["fps"] > 0 and set(row["ms_per_frame"]) == {"decode", "crop", "forward", "update", "postprocess"}
        assert 0 <= row["success_score"] <= 1


def test_diagnose_reports_updates_and_scores_as_eval(shared_data, tmp_path, capsys, one_thread):
    """`mlt diagnose` is a hook on the run loop: its success score is the one `mlt eval` gives the same frames
    (stored by tests/test_same_numbers.py), and every meta update (T = 10) is reported."""
    stored = json.loads((Path(__file__).parent / "data" / "eval_numbers.json").read_text())
    out = tmp_path / "diagnose.json"
    assert main(["diagnose", str(shared_data / "otb" / "Bird2"), "--params", "paper", "--frames", "25",
                 "--json", str(out)]) == 0
    (run,) = json.loads(out.read_text())["paper"]["Bird2"]
    assert run["success_score"] == pytest.approx(stored["one-pass"]["paper"]["Bird2"]["success_score"], abs=1e-9)
    assert [u["frame"] for u in run["updates"]] == [9, 19]  # 0-based frames 9 and 19: t = 10, 20
    assert {"delta_rms", "attention_base", "attention_target", "saturated", "target_share", "memory_low"} <= set(run["updates"][0])
    assert 0 < run["stored"] <= 24 and "gate_psr" in run and "paper AUC" in capsys.readouterr().out


def test_data_folder_is_set_from_the_command_line(tmp_path, capsys):
    absent = tmp_path / "no-data"
    assert main(["train", "matching", "--out", str(tmp_path / "run"), "--data", str(absent)]) == 2
    assert f"the shared data folder {absent} is absent: pass --data DIR" in capsys.readouterr().err
    assert main(["eval", "--data", str(absent), "--out", str(tmp_path / "eval")]) == 2
    assert f"the shared data folder {absent} is absent" in capsys.readouterr().err


def test_parameter_variants_in_one_run(shared_data, tmp_path):
    """NAME@key=value variants build trackers with those parameters; a bad override fails in one line."""
    from mlt_plugin.build import build_tracker, parse_variant

    assert parse_variant("default@update_interval=1000000000,precision=fp32") == (
        "default", {"update_interval": 1000000000, "precision": "fp32"})
    tracker = build_tracker("mt@precision=fp32,scales=(1.0,)")
    assert tracker.precision == "fp32" and tuple(tracker.params.scales) == (1.0,)
    with pytest.raises(ValueError, match="no parameter 'precison'"):
        build_tracker("mt@precison=fp32")
    with pytest.raises(ValueError, match="NAME@key=value"):
        parse_variant("mt@fp32")
    out = tmp_path / "eval"
    assert main(["eval", str(shared_data / "otb" / "Bird2"), "--params", "mt@precision=fp32", "mt@precision=bf16",
                 "--frames", "5", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert {"mt@precision=fp32", "mt@precision=bf16"} <= set(report)


def test_commands_print_no_warnings(shared_data, tmp_path):
    """No deprecation, user or leaked-resource warning reaches users (issue 22): `mlt track` and a 2-worker
    `mlt eval` at the default precision, in fresh processes (a warning printed at exit shows only there)."""
    import subprocess
    import sys

    dog = str(shared_data / "otb" / "Dog")
    for args in (["track", dog, "--frames", "3"],
                 ["eval", dog, str(shared_data / "otb" / "Bird2"), "--params", "mt", "--frames", "3", "--workers", "2",
                  "--out", str(tmp_path / "eval")]):
        run = subprocess.run([sys.executable, "-m", "mlt_plugin.cli", *args], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "Warning" not in run.stdout + run.stderr, run.stderr  # DeprecationWarning, UserWarning, warnings.warn
