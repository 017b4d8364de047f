"""OpenCV's fast CPU trackers (NanoTrack v2, VitTrack, CSRT) run beside MLT (issue 30): built through
build_tracker, and skipped with their reason where their model files or opencv-contrib are absent."""
import json

import numpy as np
import pytest

from mlt_plugin.build import build_tracker
from mlt_plugin.cli import main
from mlt_plugin.sequences import load_sequences


@pytest.mark.parametrize("name", ["nanotrack", "vittrack"])
def test_peer_tracks_real_frames(name, shared_models, shared_data):
    sequence = load_sequences(shared_data / "otb" / "Bird2")[0]
    tracker = build_tracker(name, models=shared_models)
    tracker.initialize(sequence.frame(0), sequence.boxes[0])
    height, width = sequence.frame(0).shape[:2]
    for index in range(1, 5):
        out = tracker.track(sequence.frame(index))
        x, y, w, h = out["target_bbox"]
        assert np.isfinite([x, y, w, h]).all() and w > 0 and h > 0
        # inside the frame, give or take a box: a tracker's box may leave it partly
        assert -w <= x <= width and -h <= y <= height
        assert 0 <= out["object_presence_score"] <= 1


def test_missing_models_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nanotrack_backbone_sim\.onnx.*--models DIR"):
        build_tracker("nanotrack", models=tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"vitTracker\.onnx.*--models DIR"):
        build_tracker("vittrack", models=tmp_path / "absent")


def test_csrt_without_contrib_says_what_to_install():
    import cv2

    if hasattr(cv2, "TrackerCSRT"):
        assert build_tracker("csrt") is not None
    else:
        with pytest.raises(ValueError, match="opencv-contrib-python"):
            build_tracker("csrt")


def test_eval_skips_peers_without_models_and_still_runs(shared_data, tmp_path, capsys, quiet_untrained):
    out = tmp_path / "eval"
    assert main(["eval", str(shared_data / "otb" / "Bird2"), "--params", "mt", "--peers", "--models", "/nonexistent",
                 "--frames", "3", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if " skipped: " in line]
    assert any(line.startswith("NanoTrack skipped: /nonexistent/nanotrack_v2/") and "--models DIR" in line
               for line in skipped)
    assert any(line.startswith("VitTrack skipped: /nonexistent/vittrack/vitTracker.onnx") for line in skipped)
    assert "Traceback" not in err
    assert set(json.loads((out / "results.json").read_text())) <= {"mt", "CSRT"}  # CSRT needs no model files


def test_eval_runs_peers_beside_mlt(shared_models, shared_data, tmp_path, capsys, quiet_untrained):
    """The peers go through the same runner, scorer, paired differences and results.json as MLT."""
    out = tmp_path / "eval"
    assert main(["eval", str(shared_data / "otb" / "Bird2"), "--params", "mt", "--peers", "--models", str(shared_models),
                 "--frames", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NanoTrack minus mt: " in printed and "VitTrack minus NanoTrack: " in printed  # every pair
    report = json.loads((out / "results.json").read_text())
    assert {"mt", "NanoTrack", "VitTrack"} <= set(report)
    assert report["NanoTrack"]["seq_wise"]["Bird2"]["frames"] == 4
    assert "paired_difference" in report["VitTrack"]["overall"]
