"""A wheel built from the checkout installs outside the repository and tracks with every parameter set
(issue 30): the shipped weights, calibration files and parameter sets are inside it."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a folder outside the checkout, importing only the installed copy.
TRACK_EVERY_SET = """
import warnings, mlt_plugin
from mlt_plugin import build_tracker
from mlt_plugin.demo import demo_sequence
from mlt_plugin.params import parameter_set_names
from mlt_plugin.networks.weights_io import UntrainedWeightsWarning
assert "{root}" not in mlt_plugin.__file__, mlt_plugin.__file__
sequence = demo_sequence(num_frames=3)
for name in parameter_set_names():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = build_tracker(name)
        tracker.initialize(sequence.frame(0), sequence.boxes[0])
        for index in (1, 2):
            box = tracker.track(sequence.frame(index))["target_bbox"]
    untrained = [w for w in caught if issubclass(w.category, UntrainedWeightsWarning)]
    print(name, [round(v, 1) for v in box], "UNTRAINED" if untrained else "trained")
"""


def test_wheel_installs_outside_the_checkout_and_tracks_with_every_parameter_set(tmp_path):
    # Built from a copy of what the wheel takes: setuptools' build/ folder in the checkout would keep stale files.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("mlt_plugin", "parameter", "tracker_wrappers"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
                   check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("mlt_tracker-*.whl")
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True, cwd=tmp_path)
    assert (target / "mlt_plugin" / "weights" / "mlt.safetensors").is_file()
    run = subprocess.run([sys.executable, "-c", TRACK_EVERY_SET.format(root=ROOT)], cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.strip().splitlines())
    from mlt_plugin.params import parameter_set_names
    assert sorted(lines) == sorted(parameter_set_names())
    # Every set with a shipped weight file in the checkout has it in the wheel too.
    from mlt_plugin.networks.weights_io import default_file
    from mlt_plugin.params import load_parameters
    for name, line in lines.items():
        params = load_parameters(name)
        variant = "mlt" if params.update == "meta" else "mt"
        shipped = default_file(params.extractor, variant).is_file()
        assert (line.split()[-1] == "UNTRAINED") != shipped, (name, line)
