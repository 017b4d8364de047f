"""Evaluation protocols (issue 35): VOT's restart protocol checked against vot-toolkit's own analysis,
OTB's temporal starts, and the same command giving the same numbers twice."""
import json
import os

import numpy as np
import pytest

from mlt_plugin import metrics
from mlt_plugin.evaluation import running, scoring
from mlt_plugin.evaluation.results import load_result
from mlt_plugin.cli import main
from mlt_plugin.sequences import Sequence, load_sequences


class Scripted:
    """Draws the ground truth, offset by a tenth of its size, and a box far off the target on ``lose``
    frames: a tracker whose failures are known in advance."""

    name = "Scripted"

    def __init__(self, truth, lose=(), frame_of=None):
        self.truth, self.lose, self.inits = np.asarray(truth, dtype=np.float64), set(lose), []
        # which frame an initialisation is on: by default the one whose ground truth is the initial box
        self.frame_of = frame_of or (lambda image, box: np.flatnonzero(np.all(np.abs(self.truth - box) < 1e-6, 1))[0])

    def initialize(self, image, box):
        self.frame = int(self.frame_of(image, box))
        self.inits.append(self.frame)

    def track(self, image):
        self.frame += 1
        x, y, w, h = self.truth[self.frame]
        box = [x + 0.1 * w, y + 0.1 * h, 1.1 * w, 0.9 * h]
        if self.frame in self.lose:
            box[0] += 10 * w + 1000
        return {"target_bbox": np.array(box)}


def _generated(frames=40, hidden=()):
    boxes = np.array([[20.0 + i, 30.0, 40.0, 30.0] for i in range(frames)])
    visible = np.ones(frames, bool)
    visible[list(hidden)] = False
    images = [np.full((120, 160, 3), i, np.uint8) for i in range(frames)]  # frame i's pixels are i
    return Sequence("generated", images, boxes, visible)


def test_restart_policy_reinitialises_five_frames_after_a_failure_on_a_visible_target(tmp_path):
    sequence = _generated(40, hidden=[15])
    tracker = Scripted(sequence.boxes, lose={10, 30})
    results = running.run([tracker], [sequence], tmp_path, protocol="restart", log=lambda *_: None)
    boxes, seconds, states = results["Scripted"]["generated"][0]
    # Failure on 10; 15 (5 later) has no visible target, so the next initialisation is on 16; failure on 30, init 35.
    assert tracker.inits == [0, 16, 35]
    assert np.flatnonzero(states == metrics.INITIALIZATION).tolist() == [0, 16, 35]
    assert np.flatnonzero(states == metrics.FAILURE).tolist() == [10, 30]
    assert np.flatnonzero(states == metrics.SKIPPED).tolist() == [11, 12, 13, 14, 15, 31, 32, 33, 34]
    assert np.isnan(boxes[states != metrics.TRACKED]).all() and np.isfinite(boxes[states == metrics.TRACKED]).all()
    assert (seconds[states == metrics.SKIPPED] == 0).all()
    # The saved trajectory reads back the same (resume), in vot-toolkit's text format.
    saved = load_result(tmp_path, "Scripted", sequence, protocol="restart")
    np.testing.assert_array_equal(saved[2], states)
    np.testing.assert_allclose(saved[0], boxes.round(3))
    lines = (tmp_path / "Scripted" / "generated.txt").read_text().splitlines()
    assert lines[0] == "1" and lines[10] == "2" and lines[11] == "0" and len(lines[1].split(",")) == 4

    summary = metrics.restart_summary(boxes, states, sequence.boxes, sequence.visible)
    assert summary["failures"] == 2 and summary["frames"] == 39
    assert summary["failures_per_100"] == pytest.approx(200 / 39)
    expected_iou = metrics.iou(boxes[1], sequence.boxes[1])  # every tracked box has the same offset
    assert summary["accuracy"] == pytest.approx(expected_iou)
    assert summary["accuracy_frames"] == 4  # 26-29: 1-9, 17-25 and 36-39 are within 10 frames of an initialisation
    # mean overlap: tracked visible frames carry the IoU, failures and skipped frames 0, initialisations left out
    tracked = ((states == metrics.TRACKED) & sequence.visible).sum()
    assert summary["mean_overlap"] == pytest.approx(tracked * expected_iou / (39 - 3))


def _vot_copy(sequence_folder, boxes, target):
    """A VOT sequence folder over the same frames whose ground truth is the axis-aligned boxes the project scores."""
    (target / "color").mkdir(parents=True)
    (target / "sequence").write_text((sequence_folder / "sequence").read_text())
    for frame in sorted((sequence_folder / "color").glob("*.jpg")):
        os.symlink(frame, target / "color" / frame.name)
    np.savetxt(target / "groundtruth.txt", boxes, fmt="%.3f", delimiter=",")
    return target


def test_restart_numbers_match_vot_toolkit_analysis(shared_data, tmp_path):
    """Accuracy, failures and the EAO curve of a restart run on a real VOT sequence, from the project's
    result file, equal vot-toolkit's AccuracyRobustness and EAOCurve on the same file (vot rasterises
    regions to pixels, so overlaps agree to ~0.01; the curve's arithmetic is checked exactly below)."""
    from vot.analysis.supervised import AccuracyRobustness, EAOCurve
    from vot.dataset import load_sequence
    from vot.region.io import read_trajectory

    sequence = load_sequences(shared_data / "vot" / "bolt1")[0]
    tracker = Scripted(sequence.boxes, lose={25, 60, 61, 62, 67, 150})  # 67: lost again right after a restart
    results = running.run([tracker], [sequence], tmp_path / "r", protocol="restart", log=lambda *_: None)
    perf = scoring.restart_performance(results, [sequence])["Scripted"]
    ours = perf["seq_wise"]["bolt1"]
    assert ours["failures"] == 4  # 60's restart is on 65, so 61 and 62 are skipped

    vot_sequence = load_sequence(str(_vot_copy(shared_data / "vot" / "bolt1", sequence.boxes, tmp_path / "vot" / "bolt1")))
    regions = read_trajectory(str(tmp_path / "r" / "Scripted" / "bolt1.txt"))

    class Gathered:  # the experiment's results, as vot's analyses ask for them
        def gather(self, tracker, sequence):
            return [type("Trajectory", (), {"regions": lambda self: regions})()]

    accuracy, failures, _, _ = AccuracyRobustness(burnin=10, bounded=False).subcompute(Gathered(), None, vot_sequence, [])
    assert failures == ours["failures"]
    assert ours["accuracy"] == pytest.approx(accuracy, abs=0.01)
    vot_curve = EAOCurve(bounded=False).subcompute(Gathered(), None, [vot_sequence], [])[0]
    boxes, _, states = results["Scripted"]["bolt1"][0]
    segments = metrics.restart_summary(boxes, states, sequence.boxes, sequence.visible)["segments"]
    vot_curve = np.asarray(vot_curve)
    # The first entries average a few frames of a 38 px wide target: one rasterised pixel moves them ~0.01.
    np.testing.assert_allclose(metrics.eao_curve(segments)[1:], vot_curve[1:], atol=0.02)
    assert metrics.expected_average_overlap(segments, 10, 70) == pytest.approx(vot_curve[10:71].mean(), abs=0.01)
    # Beyond vot's curve (its longest segment) failed segments go on counting zeros up to the window's end.
    low, high = perf["overall"]["eao_range"]
    assert high >= len(vot_curve) and 0 < perf["overall"]["eao"] < vot_curve[-1]


def test_eao_curve_equals_vot_toolkit_on_random_segments():
    from vot.analysis.supervised import compute_eao_curve

    rng = np.random.default_rng(0)
    segments = [(rng.random(rng.integers(2, 50)), bool(rng.random() < 0.5)) for _ in range(30)]
    expected = compute_eao_curve([o for o, _ in segments], [1] * len(segments), [not f for _, f in segments])
    np.testing.assert_allclose(metrics.eao_curve(segments)[1:], np.asarray(expected)[1:], rtol=1e-5)


def test_temporal_starts_initialise_later_and_score_from_there(tmp_path):
    sequence = _generated(40)
    tracker = Scripted(sequence.boxes, frame_of=lambda image, box: image[0, 0, 0])
    results = running.run([tracker], [sequence], tmp_path, starts=2, temporal_starts=2, log=lambda *_: None)
    assert tracker.inits == [0, 0, 20, 10]  # exact box, one SRE start, half-way, a quarter in
    runs = results["Scripted"]["generated"]
    boxes = runs[2][0]
    assert np.isnan(boxes[:20]).all() and np.isfinite(boxes[20:]).all()
    assert (tmp_path / "Scripted" / "generated_tre1.txt").is_file()
    expected = metrics.ope_summary(boxes[20:], sequence.boxes[20:])["success_score"]
    assert scoring.score(boxes, sequence)["success_score"] == pytest.approx(expected)
    perf = scoring.performance(results, [sequence])["Scripted"]
    assert perf["seq_wise"]["generated"]["starts"] == 4
    assert perf["seq_wise"]["generated"]["frames"] == 40 + 40 + 20 + 30
    with pytest.raises(ValueError, match="restart protocol"):
        running.run([tracker], [sequence], protocol="restart", temporal_starts=1)
    with pytest.raises(ValueError, match="--temporal-starts"):
        running.run([tracker], [sequence], temporal_starts=99)


def test_the_same_eval_twice_gives_identical_numbers(shared_data, tmp_path, capsys):
    """Determinism (issue 35): both protocols, twice, into separate folders: the same per-sequence numbers."""
    paths = [str(shared_data / "otb" / "Bird2"), str(shared_data / "vot" / "bolt1")]
    numbers = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        for protocol in ("one-pass", "restart"):
            assert main(["eval", *paths, "--params", "lite", "--frames", "30", "--protocol", protocol,
                         "--out", str(out)]) == 0
        one_pass = json.loads((out / "results.json").read_text())["lite"]["seq_wise"]
        restart = json.loads((out / "restart.json").read_text())["lite"]["seq_wise"]
        numbers.append(({s: e["success_score"] for s, e in one_pass.items()},
                        {s: (e["mean_overlap"], e["accuracy"], e["failures"]) for s, e in restart.items()}))
    capsys.readouterr()
    assert numbers[0] == numbers[1]
    assert (tmp_path / "a" / "results" / "restart-first30" / "lite" / "bolt1.txt").is_file()
