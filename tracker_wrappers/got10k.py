"""MLT in the GOT-10k toolkit (got10k 0.1.3): a ``got10k.trackers.Tracker`` and an offline runner.

Python, with got10k's own experiments::

    from got10k.experiments import ExperimentDTB70
    from tracker_wrappers.got10k import MLTTracker
    tracker = MLTTracker("mt")                # got10k Tracker named 'MLT-mt'; PIL in, [x, y, w, h] out
    tracker = MLTTracker("lite_mt")           # any parameter set: 'MLT-lite_mt' ('MLT' for default)
    experiment.run(tracker); experiment.report([tracker.name])

Command line (offline, on a local root that may hold only part of a benchmark; never downloads)::

    python -m tracker_wrappers.got10k --experiment otb --root /data/OTB100 [--params default] [--workers 2]

``--params``: any set of ``mlt_plugin.params.parameter_set_names()`` (default, mt, mt_ft, paper, paper_mt,
paper_mt_ft, lite, lite_mt, lite_mt_ft, fast; ``--help`` lists them).

otb, uav123 (10 or 30 fps, native layout with configSeqs.m or a .json), dtb70, tcolor128 and lasot run
on MLT's evaluation core (``tracker_wrappers.experiment`` over ``mlt_plugin.evaluation``: the same reader,
runner, scorer and plots as `mlt eval`, so the same boxes give the same numbers); got10k runs got10k's own
ExperimentGOT10k (its val report, or the test subset packed for the evaluation server), with atomic result
files.
Results keep the toolkit's layout: ``results/<BENCH>/<tracker>/<seq>.txt`` (+ ``times/``),
``reports/<BENCH>/<tracker>/performance.json`` + plots.
"""
import argparse
import os
import sys
from pathlib import Path

import numpy as np

from mlt_plugin.evaluation.running import tracker_name
from mlt_plugin.files import write_atomic
from mlt_plugin.sequences import Sequence, is_uav123_root, load_sequences
from tracker_wrappers.experiment import Experiment, add_runner_arguments, runner_main

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MPLBACKEND", "Agg")  # got10k imports pyplot; headless machines need Agg

from got10k.experiments.got10k import ExperimentGOT10k  # noqa: E402
from got10k.trackers import Tracker  # noqa: E402

EXPERIMENTS = ("otb", "uav123", "dtb70", "tcolor128", "got10k", "lasot")


class MLTTracker(Tracker):
    """MLT behind got10k's ``init(image, box)`` / ``update(image) -> box`` (PIL RGB images, [x, y, w, h]).

    ``build()`` makes it a spec for MLT's runner, which builds the network in each worker process.
    """

    def __init__(self, params="default", weights=None, device=None, name=None):
        param_name = params if isinstance(params, str) else params.get("name", "custom")
        super().__init__(name=name or tracker_name(param_name), is_deterministic=True)
        self.params, self.weights, self.device = params, weights, device
        self._mlt = None

    def build(self):
        from mlt_plugin import build_tracker

        return build_tracker(self.params, weights=self.weights, device=self.device)

    def init(self, image, box):
        if self._mlt is None:
            self._mlt = self.build()
        self._mlt.initialize(np.asarray(image), np.asarray(box, dtype=np.float64))

    def update(self, image):
        return np.asarray(self._mlt.track(np.asarray(image))["target_bbox"], dtype=np.float64)

    def __getstate__(self):  # a pickled tracker carries only its settings
        return {**self.__dict__, "_mlt": None}


def _from_got10k(dataset) -> list:
    """Sequences from a got10k dataset object (layouts MLT has no reader for: TColor128, UAV123 via got10k's json)."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # got10k prints a line per absent sequence
        items = [(name, dataset[i]) for i, name in enumerate(dataset.seq_names)]
    return [Sequence(name, list(item[0]), np.asarray(item[1], dtype=np.float64), one_based=True) for name, item in items]


def load_benchmark(experiment: str, root: str, version=None):
    """(sequences, benchmark name) for ``--experiment`` on a local root."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root {root} does not exist")
    if experiment == "otb":
        from got10k.datasets import OTB

        version = _otb_version(version or 2015)
        names = set(OTB._OTB__version_dict[version])
        sequences = [s for s in load_sequences(root) if s.name.split(".")[0] in names]
        name = f"OTB{version}"
    elif experiment == "uav123":
        if is_uav123_root(Path(root)):  # configSeqs.m or UAV*.json: MLT's reader
            sequences = load_sequences(root)
            name = "UAV123_10fps" if any(s.fps == 10 for s in sequences) else "UAV123"
        else:  # the 30 fps layout with got10k's packaged frame ranges
            from got10k.datasets import UAV123

            name = (version or "UAV123").upper()
            sequences = _from_got10k(UAV123(root, version=name))
    elif experiment == "dtb70":
        sequences, name = load_sequences(root), "DTB70"
    elif experiment == "tcolor128":
        from got10k.datasets import TColor128

        sequences, name = _from_got10k(TColor128(root, download=False)), "TColor128"
    else:
        raise ValueError(f"no OTB-style benchmark for experiment {experiment!r}")
    if not sequences:
        raise ValueError(f"no {name} sequences found under {root}")
    return sequences, name


def _otb_version(version):
    text = str(version).lower()
    if text in ("2013", "2015"):
        return int(text)
    if text in ("otb2013", "otb2015", "tb50", "tb100"):
        return text
    raise ValueError(f"unknown OTB version {version!r}: use 2013, 2015, tb50 or tb100")


class OfflineExperimentGOT10k(ExperimentGOT10k):
    """got10k's GOT-10k experiment (its own scoring and server packing) with atomic result files."""

    def _record(self, record_file, boxes, times):
        time_file = record_file[: record_file.rfind("_")] + "_time.txt"
        repetition = int(record_file[record_file.rfind("_") + 1: -4])
        column = np.asarray(times, dtype=np.float64)[:, None]
        if os.path.exists(time_file):
            previous = np.loadtxt(time_file, delimiter=",", ndmin=2)
            # Keep the columns of earlier repetitions only (a crash may have left this one's column).
            column = np.concatenate((previous[:, : repetition - 1], column), axis=1)
        write_atomic(time_file, lambda tmp: np.savetxt(tmp, column, fmt="%.8f", delimiter=","))
        write_atomic(record_file, lambda tmp: np.savetxt(tmp, boxes, fmt="%.3f", delimiter=","))


def make_experiment(experiment, root, result_dir="results", report_dir="reports", frames=None,
                    version=None, subset=None, shard=None):
    """The experiment object for ``--experiment`` on a local root."""
    if experiment == "lasot":
        from tracker_wrappers.lasot import ExperimentLaSOT

        return ExperimentLaSOT(root, subset or "test", result_dir, report_dir, frames, shard)
    if experiment == "got10k":
        if frames is not None or shard is not None:
            raise ValueError("--frames and --shard are not supported for the GOT-10k experiment (got10k's own runner)")
        if not os.path.isdir(os.path.join(root, subset or "val")):
            raise FileNotFoundError(f"no {subset or 'val'}/ folder under the GOT-10k root {root}")
        return OfflineExperimentGOT10k(root, subset=subset or "val", result_dir=result_dir, report_dir=report_dir)
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}: choose from {', '.join(EXPERIMENTS)}")
    sequences, benchmark = load_benchmark(experiment, root, version)
    return Experiment(sequences, benchmark, result_dir, report_dir, frames, shard)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tracker_wrappers.got10k",
        description="Run MLT on a local benchmark root with the got10k toolkit's experiment shape (offline; "
        "subsets of a benchmark are fine) and report success AUC, precision@20 and fps.",
    )
    parser.add_argument("--experiment", required=True, choices=EXPERIMENTS)
    parser.add_argument("--root", required=True, help="dataset root in the benchmark's own layout")
    parser.add_argument("--version", help="otb: 2015 (default), 2013, tb50, tb100; uav123 (30 fps): UAV123 or UAV20L")
    parser.add_argument("--subset", default=None, help="got10k: val (default) or test; lasot: test (default) or all")
    add_runner_arguments(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)

    def experiment():
        return make_experiment(args.experiment, args.root, args.result_dir, args.report_dir, args.frames,
                               args.version, args.subset, args.shard)

    return runner_main(args, experiment, _run_got10k if args.experiment == "got10k" else None)


def _run_got10k(experiment, spec, args):
    """got10k's own GOT-10k experiment: its runner calls a got10k Tracker, its report scores."""
    tracker = MLTTracker(args.params, weights=args.weights, device=args.device)
    if not args.report_only:
        experiment.run(tracker)
    if args.no_report:
        return 0
    performance = experiment.report([tracker.name])
    if performance is None:  # test subset: results packed for the evaluation server
        return 0
    overall = performance[tracker.name]["overall"]
    print(f"{tracker.name} on GOT-10k ({experiment.subset}), got10k's own scoring:")
    print(f"  AO (average overlap, got10k 'ao'): {overall['ao']:.3f}")
    print(f"  SR0.5 (got10k 'sr'):               {overall['sr']:.3f}")
    print(f"  speed: {overall['speed_fps']:.1f} fps (got10k 'speed_fps')")
    print(f"  report: {os.path.join(experiment.report_dir, tracker.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
