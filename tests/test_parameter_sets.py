"""Every parameter set loads, builds and tracks, and every place that offers parameter sets offers all of them:
VOT trackers.ini and `mlt vot-setup`, pytracking, the got10k runner, the LaSOT experiment, `mlt track`/`eval`.

Passes before and after the trained lite weight files exist: a set whose default weight file is absent
must warn UntrainedWeightsWarning (and still track, on random last layers)."""
import configparser
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from mlt_plugin.evaluation.running import tracker_name
from mlt_plugin.params import load_parameters, parameter_set_names

REPO = Path(__file__).resolve().parents[1]
NAMES = parameter_set_names()
VOT_SETS = [name for name in NAMES if name != "fast"]  # fast is a CPU preset, not a VOT entry


def test_the_families_are_all_there():
    for family in ("paper", "lite"):
        assert {family, f"{family}_mt", f"{family}_mt_ft"} <= set(NAMES)
    assert {"default", "mt", "mt_ft", "fast"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_set_loads(name):
    params = load_parameters(name)
    assert params.name == name and params.extractor in ("paper", "lite")


def _default_weight_file(params) -> Path:
    from mlt_plugin.networks.weights_io import default_file

    # the tracker's rule (mlt_plugin/tracking/tracker.py): only MLT proper has a meta-learner
    return default_file(params.extractor, "mlt" if params.update == "meta" else "mt")


@pytest.mark.parametrize("name", NAMES)
def test_parameter_set_tracks(name, shared_data):
    from mlt_plugin import build_tracker
    from mlt_plugin.networks.weights_io import UntrainedWeightsWarning
    from mlt_plugin.sequences import load_sequence

    sequence = load_sequence(shared_data / "otb" / "Bird2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker = build_tracker(name, device="cpu")
    untrained = [w for w in caught if issubclass(w.category, UntrainedWeightsWarning)]
    assert bool(untrained) != _default_weight_file(tracker.params).is_file(), [str(w.message) for w in caught]
    tracker.initialize(sequence.frame(0), sequence.boxes[0])
    boxes = np.array([tracker.track(sequence.frame(i))["target_bbox"] for i in (1, 2, 3)])
    assert boxes.shape == (3, 4) and np.isfinite(boxes).all() and (boxes[:, 2:] > 0).all()


def test_repository_trackers_ini_has_every_set():
    """The repository's trackers.ini is what `mlt vot-setup` writes, with paths relative to the file."""
    from mlt_plugin.toolkits.vot_setup import tracker_sections

    config = configparser.ConfigParser()
    config.optionxform = str  # keep env_MLT_PARAMS as written
    config.read(REPO / "trackers.ini")
    expected = tracker_sections(VOT_SETS, python="-")
    assert sorted(config.sections()) == sorted(expected)
    for section, entries in expected.items():
        written = dict(config[section])
        assert written.pop("paths") == "."
        assert written == {key: value for key, value in entries if key not in ("python", "paths")}
    assert [config[tracker_name(name)]["env_MLT_PARAMS"] for name in VOT_SETS] == VOT_SETS


def test_vot_setup_registers_any_set(tmp_path):
    from mlt_plugin.toolkits.vot_setup import setup_workspace

    config = configparser.ConfigParser()
    config.read(setup_workspace(tmp_path, NAMES))
    assert config.sections() == [tracker_name(name) for name in NAMES]
    assert [config[s]["env_mlt_params"] for s in config.sections()] == NAMES


def test_pytracking_install_writes_every_set(tmp_path):
    from mlt_plugin.toolkits.pytracking_install import install

    for package in ("pytracking/tracker", "pytracking/parameter"):
        (tmp_path / package).mkdir(parents=True)
    install(tmp_path)
    folder = tmp_path / "pytracking" / "parameter" / "mlt"
    assert sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__") == NAMES
    assert 'pytracking_parameters("lite_mt")' in (folder / "lite_mt.py").read_text()


def _help(parser_of, argv, capsys):
    with pytest.raises(SystemExit):
        parser_of(argv + ["--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["track", "eval", "vot-setup", "pytracking-install", "got10k", "lasot", "vot_trax"])
def test_help_lists_every_set(command, capsys):
    from mlt_plugin.cli import main

    if command == "got10k":
        from tracker_wrappers.got10k import main as entry
    elif command == "lasot":
        from tracker_wrappers.lasot import main as entry
    elif command == "vot_trax":
        from tracker_wrappers.vot_trax import parse_args as entry
    else:
        entry = lambda argv: main([command] + argv)  # noqa: E731
    words = set(re.findall(r"\w+", _help(entry, [], capsys)))
    assert set(NAMES) <= words, set(NAMES) - words


@pytest.mark.parametrize("name", NAMES)
def test_runners_accept_every_set(name):
    from tracker_wrappers.got10k import MLTTracker, build_parser as got10k_parser
    from tracker_wrappers.lasot import build_parser as lasot_parser

    assert got10k_parser().parse_args(["--experiment", "otb", "--root", "r", "--params", name]).params == name
    assert lasot_parser().parse_args(["--root", "r", "--params", name]).params == name
    assert MLTTracker(name).name == tracker_name(name) == ("MLT" if name == "default" else f"MLT-{name}")


def test_bench_runs_both_networks(monkeypatch):
    import torch

    from mlt_plugin import bench
    from mlt_plugin.params import resolve_precision

    monkeypatch.setattr(bench, "available_peers", lambda models: {})  # peers are not what is checked here
    configs = {label: (name, overrides) for label, name, overrides in bench._configs(torch.device("cpu"))}
    auto = resolve_precision("auto", torch.device("cpu"))
    for family in ("paper", "lite"):
        assert configs[f"{family} fp32"] == (family, {"device": "cpu", "precision": "fp32"})
        assert configs[f"{family} {auto}"][0] == family and configs[f"{family}_mt {auto}"][0] == f"{family}_mt"


def test_aliases_load_their_family_under_their_own_name():
    from parameter.mlt import ALIASES

    for alias, target in ALIASES.items():
        params, family = load_parameters(alias), load_parameters(target)
        assert params.name == alias and vars(params) == {**vars(family), "name": alias}


def test_every_parameter_the_tracker_reads_can_be_overridden(quiet_untrained):
    """The documented override of the gate: every key the tracker reads is declared, so '@' accepts it."""
    from mlt_plugin import build_tracker

    tracker = build_tracker("default@confidence=probability,num_threads=2", device="cpu")
    assert (tracker.params.name, tracker.params.confidence, tracker.params.num_threads) == ("default", "probability", 2)
