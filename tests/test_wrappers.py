"""Contract tests of the toolkit wrappers with the real toolkits on real data (first frames only).

VOT toolkit + TraX server, a misbehaving TraX client, got10k's OTB experiment, ExperimentLaSOT
against an independent numpy computation, and the pytracking drop-in driven the way pytracking's
runner drives a tracker. Accuracy is never asserted (the weights may be untrained).
"""
import configparser
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER = [sys.executable, "-m", "tracker_wrappers.vot_trax"]


def _env(**extra):
    env = dict(os.environ, TRAX="1", PYTHONWARNINGS="ignore", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# ------------------------------------------------------------------------------------------------
# TraX server


def _start_server(*args):
    return subprocess.Popen(SERVER + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=_env(), cwd=REPO)


def _finish(proc, timeout=60):
    proc.wait(timeout)
    return proc.returncode, proc.stdout.read().decode(), proc.stderr.read().decode()


@pytest.mark.parametrize("params", ["mt", "lite_mt"])  # both networks (lite may be untrained: boxes not scored)
def test_trax_server_tracks_polygons_and_reports_confidence(shared_data, params):
    from trax.client import Client
    from trax.image import FileImage
    from trax.region import Polygon, Rectangle

    frames = shared_data / "vot" / "ball1" / "color"
    started = time.perf_counter()
    proc = _start_server("--params", params)
    client = Client(stream=(proc.stdin.fileno(), proc.stdout.fileno()), log=lambda message: None)
    handshake = time.perf_counter() - started
    assert client.tracker_name == f"MLT-{params}"
    assert set(client.region_formats) >= {"rectangle", "polygon"}
    # A polygon (rotated box) starts the tracker at the bounding box of its corners.
    polygon = Polygon.create([(491.3, 409.47), (528.95, 399.01), (540.42, 440.33), (502.77, 450.79)])
    status, _ = client.initialize({"color": FileImage.create(str(frames / "00000001.jpg"))}, [(polygon, {})], {})
    region, _ = status[0]
    assert region.type == "rectangle"
    np.testing.assert_allclose(region.bounds(), [491.3, 399.01, 540.42 - 491.3, 450.79 - 399.01], atol=1e-3)
    for index in (2, 3):
        status, _ = client.frame({"color": FileImage.create(str(frames / f"{index:08d}.jpg"))}, {}, [])
        region, properties = status[0]
        assert region.type == "rectangle" and np.isfinite(region.bounds()).all()
        assert 0.0 <= float(properties["confidence"]) <= 1.0
    # Re-initialisation in the same session (supervised experiments do it after a failure).
    status, _ = client.initialize({"color": FileImage.create(str(frames / "00000004.jpg"))},
                                  [(Rectangle.create(480, 380, 40, 42), {})], {})
    assert status[0][0].bounds() == pytest.approx((480, 380, 40, 42))
    client.quit()
    code, _, err = _finish(proc)
    assert code == 0, err
    assert "client quit" in err
    print(f"TraX handshake {handshake:.2f} s after spawning the server")


def _hello(proc):
    line = proc.stdout.readline()
    assert line.startswith(b"@@TRAX:hello"), line


@pytest.mark.parametrize("message, reason", [
    (b'@@TRAX:initialize "file:/x.jpg" "a,b,c"\n', "malformed request"),
    (b'@@TRAX:frame "file:/nonexistent.jpg"\n', "frame request before any initialize request"),
])
def test_trax_server_answers_bad_requests_with_a_reason(message, reason):
    proc = _start_server("--params", "mt")
    _hello(proc)
    proc.stdin.write(message)
    proc.stdin.flush()
    code, out, err = _finish(proc)
    assert code == 1
    assert out.startswith("@@TRAX:quit") and reason in out  # the TraX reply carries the reason
    assert reason in err  # and stderr says it too


def test_trax_server_exits_when_the_client_disconnects():
    proc = _start_server("--params", "mt")
    _hello(proc)
    proc.stdin.close()
    code, _, err = _finish(proc)
    assert code == 0 and "client disconnected" in err


def test_trax_server_reports_start_up_errors():
    proc = _start_server("--params", "no_such_set")
    _hello(proc)  # the handshake comes before anything that can fail
    code, out, err = _finish(proc)
    assert code == 1
    assert "unknown parameter set 'no_such_set'" in out and "MLT failed to start" in err


# ------------------------------------------------------------------------------------------------
# VOT toolkit: workspace, trackers.ini, supervised / multistart / unsupervised experiments


def _vot_workspace(root: Path, shared_data: Path, frames=4, names=("ball1", "bolt1")):
    for name in names:
        src, dst = shared_data / "vot" / name, root / "sequences" / name
        (dst / "color").mkdir(parents=True)
        meta = [line for line in (src / "sequence").read_text().splitlines() if not line.startswith("length=")]
        (dst / "sequence").write_text("\n".join(meta + [f"length={frames}"]) + "\n")
        (dst / "groundtruth.txt").write_text("\n".join((src / "groundtruth.txt").read_text().splitlines()[:frames]) + "\n")
        (dst / "anchor.value").write_text("\n".join(["1", "0", "-1"] + ["0"] * (frames - 3)) + "\n")
        for i in range(1, frames + 1):
            os.symlink(src / "color" / f"{i:08d}.jpg", dst / "color" / f"{i:08d}.jpg")
    (root / "sequences" / "list.txt").write_text("\n".join(names) + "\n")


def _test_stack(path: Path):
    """The shipped local stacks' experiments in one file, one repetition (the shipped one asks for 15)."""
    import yaml

    from mlt_plugin.toolkits.vot_setup import shipped_stacks

    stacks = shipped_stacks()
    local = yaml.safe_load(stacks["local"].read_text())
    multistart = yaml.safe_load(stacks["local-multistart"].read_text())
    local["experiments"]["baseline"]["repetitions"] = 1
    local["experiments"]["multistart"] = multistart["experiments"]["baseline"]
    path.write_text(yaml.safe_dump(local))
    return path


def test_vot_toolkit_evaluate_and_analysis(shared_data, tmp_path):
    from mlt_plugin.toolkits.vot_setup import setup_workspace

    workspace = tmp_path / "ws"
    _vot_workspace(workspace, shared_data)
    stack = _test_stack(tmp_path / "stack.yaml")
    run = lambda *cmd: subprocess.run([sys.executable, "-m", "vot", *cmd], cwd=workspace, env=_env(),  # noqa: E731
                                      capture_output=True, text=True, timeout=400)
    init = run("initialize", str(stack), "--workspace", str(workspace))
    assert (workspace / "config.yaml").is_file(), init.stdout + init.stderr
    (workspace / "trackers.ini").write_text("; my trackers\n[Other]\nprotocol = trax\ncommand = other_tracker\n")
    setup_workspace(workspace, ["mt"], timeout=120)
    config = configparser.ConfigParser()
    config.read(workspace / "trackers.ini")
    assert config["Other"]["command"] == "other_tracker"
    assert config["MLT-mt"]["python"] == sys.executable and config["MLT-mt"]["timeout"] == "120"

    evaluated = run("evaluate", "MLT-mt")
    assert evaluated.returncode == 0 and "Evaluation concluded" in evaluated.stdout + evaluated.stderr, \
        evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    results = workspace / "results" / "MLT-mt"
    for sequence in ("ball1", "bolt1"):
        assert (results / "baseline" / sequence / f"{sequence}_001.bin").is_file()
        assert (results / "baseline" / sequence / f"{sequence}_001_confidence.value").is_file()
        assert (results / "unsupervised" / sequence / f"{sequence}_001.bin").is_file()
        assert (results / "multistart" / sequence / f"{sequence}_00000000.bin").is_file()  # forward anchor
        assert (results / "multistart" / sequence / f"{sequence}_00000002.bin").is_file()  # backward anchor

    analysed = run("analysis", "MLT-mt")
    assert analysed.returncode == 0 and "Analysis successful" in analysed.stdout + analysed.stderr, \
        analysed.stdout[-3000:] + analysed.stderr[-3000:]
    output = analysed.stdout + analysed.stderr
    assert "Mean of empty slice" not in output  # 12-frame sequences: EAO's 46..291 interval is empty
    assert "set 'low' and 'high' of that analysis in the stack file" in output, output[-3000:]
    report = json.loads(sorted((workspace / "analysis").glob("*.json"))[-1].read_text())
    assert set(report["results"]) == {"baseline", "multistart", "unsupervised"}
    assert report["results"]["baseline"]["type"] == "tracker_wrappers.vot_experiments.SupervisedExperiment"


def test_vot_setup_merges_trackers_ini(tmp_path):
    from mlt_plugin.toolkits.vot_setup import code_root, setup_workspace

    ini = tmp_path / "trackers.ini"
    original = "; comment kept\n[Other]\nprotocol = trax\ncommand = other\n\n[MLT]\ncommand = stale\nlabel = old\n"
    ini.write_text(original)
    setup_workspace(tmp_path, ["default", "mt"], timeout=77, device="cpu")
    text = ini.read_text()
    assert text.startswith("; comment kept\n[Other]\nprotocol = trax\ncommand = other\n")
    assert "stale" not in text
    config = configparser.ConfigParser()
    config.read(ini)
    assert config.sections() == ["Other", "MLT", "MLT-mt"]
    assert config["MLT"]["protocol"] == "traxpython" and config["MLT"]["command"] == "tracker_wrappers.vot_trax"
    assert config["MLT"]["paths"] == str(code_root()) and (code_root() / "tracker_wrappers").is_dir()
    assert config["MLT-mt"]["env_mlt_params"] == "mt" and config["MLT"]["env_mlt_device"] == "cpu"
    setup_workspace(tmp_path, ["default", "mt"], timeout=77, device="cpu")  # idempotent
    assert ini.read_text() == text
    with pytest.raises(ValueError, match="unknown parameter set"):
        setup_workspace(tmp_path, ["nope"])


# ------------------------------------------------------------------------------------------------
# got10k toolkit


def _otb_subset(root: Path, shared_data: Path, names=("Vase", "Jogging")):
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.symlink(shared_data / "otb" / name, root / name)
    return root


def test_got10k_runner_on_otb_subset(shared_data, tmp_path, capsys, quiet_untrained):
    from tracker_wrappers.got10k import main

    root = _otb_subset(tmp_path / "otb", shared_data)
    code = main(["--experiment", "otb", "--root", str(root), "--params", "mt", "--frames", "3",
                 "--result-dir", str(tmp_path / "results"), "--report-dir", str(tmp_path / "reports")])
    out = capsys.readouterr().out
    assert code == 0, out
    report = tmp_path / "reports" / "OTB2015-first3" / "MLT-mt"
    performance = json.loads((report / "performance.json").read_text())["MLT-mt"]
    assert set(performance["seq_wise"]) == {"Vase", "Jogging.1", "Jogging.2"}  # grey Vase, two-target Jogging
    assert (report / "success_plots.png").is_file() and (report / "precision_plots.png").is_file()
    assert f"{performance['overall']['success_score']:.3f}" in out and "success_score" in out
    assert "precision@20px" in out and "fps" in out
    results = tmp_path / "results" / "OTB2015-first3" / "MLT-mt"
    boxes = np.loadtxt(results / "Vase.txt", delimiter=",")
    assert boxes.shape == (3, 4) and (results / "times" / "Vase_time.txt").is_file()
    assert not list(results.rglob("*.tmp*"))


class RecordingTracker:
    """A got10k-style tracker (init/update) that outputs a fixed drift and counts the frames of each run."""

    def __init__(self, name="Drift", step=(3.0, 2.0), scale=1.02):
        self.name, self.step, self.scale, self.calls = name, step, scale, []

    def init(self, image, box):
        self.box, self.calls = np.asarray(box, dtype=float), self.calls + [1]

    def update(self, image):
        i = self.calls[-1]
        self.calls[-1] += 1
        return [self.box[0] + i * self.step[0], self.box[1] + i * self.step[1],
                self.box[2] * self.scale ** i, self.box[3] * self.scale ** i]


class DriftSpec:
    """The same drift as a spec the runner builds in its worker processes."""

    name = "MLT"

    def build(self):
        tracker = RecordingTracker()
        return type("Drift", (), {"initialize": lambda s, image, box: tracker.init(image, box),
                                  "track": lambda s, image: {"target_bbox": tracker.update(image)}})()


def test_got10k_experiment_resumes_without_redoing(shared_data, tmp_path):
    from tracker_wrappers.got10k import make_experiment

    root = _otb_subset(tmp_path / "otb", shared_data, names=("Dog",))
    experiment = make_experiment("otb", str(root), str(tmp_path / "r"), str(tmp_path / "p"), frames=5)
    tracker = RecordingTracker()
    experiment.run(tracker)
    assert tracker.calls == [5]
    saved = (tmp_path / "r" / "OTB2015-first5" / "Drift" / "Dog.txt").read_text()
    again = RecordingTracker(step=(50.0, 50.0))
    experiment.run(again)
    assert again.calls == []  # nothing redone
    assert (tmp_path / "r" / "OTB2015-first5" / "Drift" / "Dog.txt").read_text() == saved
    performance = experiment.report(["Drift"])
    assert performance["Drift"]["overall"]["frames"] == 5 and performance["Drift"]["overall"]["speed_fps"] > 0


# ------------------------------------------------------------------------------------------------
# LaSOT


def _lasot_layout(root: Path, shared_data: Path, frames=12):
    """dog-1 and person-1 (in the official test list) and dog-2 (not), from shared OTB sequences."""
    from mlt_plugin.sequences import load_sequence

    layout = {"dog/dog-1": "Dog", "person/person-1": "Human3", "dog/dog-2": "Surfer"}
    truth = {}
    for rel, source in layout.items():
        seq = load_sequence(shared_data / "otb" / source)
        folder = root / rel
        (folder / "img").mkdir(parents=True)
        for i in range(frames):
            os.symlink(seq.frames[i], folder / "img" / f"{i + 1:08d}.jpg")
        gt = seq.boxes[:frames] + [1, 1, 0, 0]  # LaSOT files are 1-based
        np.savetxt(folder / "groundtruth.txt", gt, fmt="%.2f", delimiter=",")
        occluded = np.zeros(frames, int)
        out_of_view = np.zeros(frames, int)
        occluded[[4, 5]] = 1
        out_of_view[frames - 3] = 1
        (folder / "full_occlusion.txt").write_text(",".join(map(str, occluded)))
        (folder / "out_of_view.txt").write_text(",".join(map(str, out_of_view)))
        truth[folder.name] = (gt, ~(occluded.astype(bool) | out_of_view.astype(bool)))
    return truth


def _independent_scores(pred, gt, visible):
    """Success AUC, precision@20 and normalised precision written out with plain numpy loops."""
    pred = pred.copy()
    pred[0] = gt[0]
    ious, errors, norm_errors = [], [], []
    for p, g, v in zip(pred, gt, visible):
        if not v:
            ious.append(-1.0), errors.append(np.inf), norm_errors.append(np.inf)
            continue
        ix = max(0.0, min(p[0] + p[2], g[0] + g[2]) - max(p[0], g[0]))
        iy = max(0.0, min(p[1] + p[3], g[1] + g[3]) - max(p[1], g[1]))
        inter = ix * iy
        ious.append(inter / (p[2] * p[3] + g[2] * g[3] - inter))
        dx = (p[0] + p[2] / 2) - (g[0] + g[2] / 2)
        dy = (p[1] + p[3] / 2) - (g[1] + g[3] / 2)
        errors.append(np.hypot(dx, dy))
        norm_errors.append(np.hypot(dx / g[2], dy / g[3]))
    n = len(gt)
    success = [sum(i > t for i in ious) / n for t in np.arange(21) * 0.05]
    precision20 = sum(e <= 20 for e in errors) / n
    norm = [sum(e <= t for e in norm_errors) / n for t in np.arange(51) * 0.01]
    return np.mean(success), precision20, np.mean(norm)


def test_lasot_experiment_scores_match_independent_computation(shared_data, tmp_path):
    from tracker_wrappers.lasot import ExperimentLaSOT, test_sequence_names

    assert len(test_sequence_names()) == 280 and len(set(test_sequence_names())) == 280
    truth = _lasot_layout(tmp_path / "LaSOT", shared_data)
    test = ExperimentLaSOT(tmp_path / "LaSOT", "test", tmp_path / "r", tmp_path / "p")
    assert test.seq_names == ["dog-1", "person-1"]  # protocol II: only test-list sequences
    experiment = ExperimentLaSOT(tmp_path / "LaSOT", "all", tmp_path / "r", tmp_path / "p")
    assert experiment.seq_names == ["dog-1", "dog-2", "person-1"]
    tracker = RecordingTracker()
    experiment.run(tracker)
    assert tracker.calls == [12, 12, 12]
    performance = experiment.report([tracker.name])["Drift"]
    expected = {}
    for name, (gt, visible) in truth.items():
        pred = np.loadtxt(tmp_path / "r" / "LaSOT-all" / "Drift" / f"{name}.txt", delimiter=",")
        expected[name] = _independent_scores(pred, gt, visible)
        seq = performance["seq_wise"][name]
        assert seq["success_score"] == pytest.approx(expected[name][0], abs=1e-9)
        assert seq["precision_score"] == pytest.approx(expected[name][1], abs=1e-9)
        assert seq["normalized_precision_score"] == pytest.approx(expected[name][2], abs=1e-9)
    overall = performance["overall"]
    assert overall["success_score"] == pytest.approx(np.mean([e[0] for e in expected.values()]), abs=1e-9)
    assert overall["precision_score"] == pytest.approx(np.mean([e[1] for e in expected.values()]), abs=1e-9)
    assert overall["normalized_precision_score"] == pytest.approx(np.mean([e[2] for e in expected.values()]), abs=1e-9)
    report = tmp_path / "p" / "LaSOT-all" / "Drift"
    for name in ("performance.json", "success_plots.png", "precision_plots.png", "norm_precision_plots.png"):
        assert (report / name).is_file()


def test_lasot_shards_workers_resume_and_cli(shared_data, tmp_path, capsys):
    from tracker_wrappers.lasot import ExperimentLaSOT, main

    _lasot_layout(tmp_path / "LaSOT", shared_data, frames=6)
    args = (tmp_path / "LaSOT", "all", tmp_path / "r", tmp_path / "p")
    first = ExperimentLaSOT(*args, frames=4, shard="0/2")
    assert first.shard_names() == ["dog-1", "person-1"]
    tracker = RecordingTracker(name="MLT")
    first.run(tracker)
    with pytest.raises(ValueError, match="no results for 1 of 3"):
        first.report(["MLT"])
    second = ExperimentLaSOT(*args, frames=4, shard="1/2")
    second.run(DriftSpec(), workers=2)  # spawned worker processes build their own trackers
    assert tracker.calls == [4, 4]
    results = tmp_path / "r" / "LaSOT-all-first4" / "MLT"
    assert sorted(p.name for p in results.glob("*.txt")) == ["dog-1.txt", "dog-2.txt", "person-1.txt"]
    whole = ExperimentLaSOT(*args, frames=4)
    whole.run(tracker)  # everything saved: resumes with nothing to do
    assert tracker.calls == [4, 4]
    capsys.readouterr()
    code = main(["--root", str(tmp_path / "LaSOT"), "--subset", "all", "--frames", "4", "--report-only",
                 "--result-dir", str(tmp_path / "r"), "--report-dir", str(tmp_path / "p")])
    out = capsys.readouterr().out
    assert code == 0 and "success AUC" in out and "normalized precision" in out
    with pytest.raises(ValueError, match="shard"):
        ExperimentLaSOT(*args, shard="2/2")
    broken = tmp_path / "LaSOT" / "dog" / "dog-2" / "img" / "00000003.jpg"
    broken.unlink()
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    code = main(["--root", str(tmp_path / "LaSOT"), "--subset", "all", "--frames", "5", "--params", "mt",
                 "--result-dir", str(tmp_path / "r"), "--report-dir", str(tmp_path / "p")])
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "dog-2/img/00000003.jpg" in errors[0] and "Traceback" not in err


# ------------------------------------------------------------------------------------------------
# pytracking drop-in


PYTRACKING_ROOT = os.environ.get("MLT_PYTRACKING_ROOT")


def _got10k_layout(root: Path, sequence, frames: int):
    """A GOT-10k val layout holding the first frames of a real sequence (pytracking reads its list.txt)."""
    folder = root / "val" / sequence.name
    folder.mkdir(parents=True)
    for i in range(frames):
        os.symlink(sequence.frames[i], folder / f"{i + 1:08d}.jpg")
    np.savetxt(folder / "groundtruth.txt", sequence.boxes[:frames], fmt="%.2f", delimiter=",")
    (root / "val" / "list.txt").write_text(sequence.name + "\n")


@pytest.mark.skipif(not PYTRACKING_ROOT, reason="set MLT_PYTRACKING_ROOT to a pytracking checkout "
                    "(git clone https://github.com/visionml/pytracking) to test the drop-in against it")
def test_pytracking_checkout_runs_mlt(shared_data, tmp_path):
    """`mlt pytracking-install`, then pytracking's own run_tracker.py from inside pytracking/pytracking/."""
    import shutil

    from mlt_plugin.sequences import load_sequence
    from mlt_plugin.toolkits.pytracking_install import install

    checkout = tmp_path / "pytracking"  # a copy: the user's checkout stays untouched
    for package in ("pytracking", "ltr"):
        shutil.copytree(Path(PYTRACKING_ROOT) / package, checkout / package,
                        ignore=shutil.ignore_patterns("local.py", "tracking_results", "__pycache__"))
    written = install(checkout)
    assert checkout / "pytracking" / "parameter" / "mlt" / "mt.py" in written
    _got10k_layout(tmp_path / "got10k", load_sequence(shared_data / "otb" / "Bird2"), frames=5)
    (checkout / "pytracking" / "evaluation" / "local.py").write_text(
        "from pytracking.evaluation.environment import EnvSettings\n\n"
        "def local_env_settings():\n    settings = EnvSettings()\n"
        f"    settings.got10k_path = {str(tmp_path / 'got10k')!r}\n"
        f"    settings.results_path = {str(tmp_path / 'results')!r}\n    return settings\n")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("PYTHONPATH", None)  # as a user runs it: MLT comes from the environment it is installed in
    proc = subprocess.run([sys.executable, "run_tracker.py", "mlt", "mt", "--dataset_name", "got10k_val"],
                          cwd=checkout / "pytracking", env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "RecursionError" not in output and "Error" not in output, output
    boxes = np.loadtxt(tmp_path / "results" / "mlt" / "mt" / "Bird2.txt", delimiter="\t")
    assert boxes.shape == (5, 4) and np.isfinite(boxes).all() and (boxes[:, 2:] > 0).all()
    assert np.allclose(boxes[0], load_sequence(shared_data / "otb" / "Bird2").boxes[0], atol=0.01)


def test_pytracking_install_files(tmp_path):
    """Re-install, other files left alone, --force for edited files, a clear error for a non-checkout."""
    from mlt_plugin.toolkits.pytracking_install import install

    checkout = tmp_path / "checkout"
    for package in ("pytracking/tracker", "pytracking/parameter"):
        (checkout / package).mkdir(parents=True)
    install(checkout)
    install(checkout)  # over its own files: fine
    foreign = checkout / "pytracking" / "parameter" / "mlt" / "mine.py"
    foreign.write_text("# user file\n")
    install(checkout / "pytracking", ["mt"])  # the package folder works as well
    assert foreign.read_text() == "# user file\n"
    (checkout / "pytracking" / "parameter" / "mlt" / "default.py").write_text("# user edit\n")
    with pytest.raises(ValueError, match="--force"):
        install(checkout)
    install(checkout, force=True)
    with pytest.raises(FileNotFoundError, match="not a pytracking checkout"):
        install(tmp_path)


# ------------------------------------------------------------------------------------------------
# One scorer: the same boxes give the same numbers in every runner


def test_mlt_eval_got10k_and_lasot_score_identical_boxes_identically(shared_data, tmp_path):
    """Dog's first 12 frames in OTB, UAV123 (native configSeqs.m) and LaSOT layouts, with frames 5-6
    unannotated (NaN lines; LaSOT: full occlusion). One drifting tracker, four runners, one number."""
    from mlt_plugin.evaluation import running, scoring
    from mlt_plugin.sequences import load_sequence, load_sequences
    from tracker_wrappers.got10k import make_experiment
    from tracker_wrappers.lasot import ExperimentLaSOT

    seq, frames, hidden = load_sequence(shared_data / "otb" / "Dog"), 12, [4, 5]
    gt = seq.boxes[:frames] + [1, 1, 0, 0]  # 1-based files
    with_nan = gt.copy()
    with_nan[hidden] = np.nan
    layouts = {"otb": tmp_path / "otb" / "Dog" / "img", "uav": tmp_path / "uav" / "data_seq" / "UAV123_10fps" / "dog",
               "lasot": tmp_path / "lasot" / "dog" / "dog-1" / "img"}
    for kind, folder in layouts.items():
        folder.mkdir(parents=True)
        for i in range(frames):
            os.symlink(seq.frames[i], folder / (f"{i + 1:06d}.jpg" if kind == "uav" else f"{i + 1:08d}.jpg"))
    np.savetxt(tmp_path / "otb" / "Dog" / "groundtruth_rect.txt", with_nan, fmt="%.2f", delimiter=",")
    (tmp_path / "uav" / "anno" / "UAV123_10fps").mkdir(parents=True)
    np.savetxt(tmp_path / "uav" / "anno" / "UAV123_10fps" / "dog.txt", with_nan, fmt="%.2f", delimiter=",")
    (tmp_path / "uav" / "configSeqs.m").write_text(
        "seqUAV123_10fps={struct('name','dog','path','C:\\\\UAV123\\\\data_seq\\\\UAV123_10fps\\\\dog\\\\',"
        f"'startFrame',1,'endFrame',{frames},'nz',6,'ext','jpg','init_rect',[0,0,0,0])}};\n")
    np.savetxt(tmp_path / "lasot" / "dog" / "dog-1" / "groundtruth.txt", gt, fmt="%.2f", delimiter=",")
    occluded = np.zeros(frames, int)
    occluded[hidden] = 1
    (tmp_path / "lasot" / "dog" / "dog-1" / "full_occlusion.txt").write_text(",".join(map(str, occluded)))

    scores = {}
    results = running.run([RecordingTracker()], load_sequences(tmp_path / "otb"), tmp_path / "eval")  # mlt eval
    scores["mlt eval"] = scoring.performance(results, load_sequences(tmp_path / "otb"))["Drift"]
    for kind in ("otb", "uav123"):
        experiment = make_experiment(kind, str(tmp_path / ("otb" if kind == "otb" else "uav")), str(tmp_path / "r"),
                                     str(tmp_path / "p"))
        experiment.run(RecordingTracker())
        scores[f"got10k {kind}"] = experiment.report(["Drift"])["Drift"]
    lasot = ExperimentLaSOT(tmp_path / "lasot", "all", tmp_path / "r", tmp_path / "p")
    lasot.run(RecordingTracker())
    scores["lasot"] = lasot.report(["Drift"])["Drift"]

    pred = np.loadtxt(tmp_path / "r" / "LaSOT-all" / "Drift" / "dog-1.txt", delimiter=",")
    visible = np.ones(frames, bool)
    visible[hidden] = False
    expected = _independent_scores(pred, gt, visible)
    for runner, perf in scores.items():
        overall = perf["overall"]
        got = (overall["success_score"], overall["precision_score"], overall["normalized_precision_score"])
        assert got == pytest.approx(expected, abs=1e-12), runner
    # The rule matters: leaving the unannotated frames out (got10k's own UAV123 rule) gives other numbers.
    dropped = _independent_scores(pred[visible], gt[visible], visible[visible])
    assert abs(dropped[0] - expected[0]) > 0.05
