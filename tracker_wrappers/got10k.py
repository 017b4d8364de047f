"""MLT in the GOT-10k toolkit (got10k 0.1.3): a ``got10k.trackers.Tracker`` and an offline runner.

Python::

    from got10k.experiments import ExperimentOTB
    from tracker_wrappers.got10k import MLTTracker
    tracker = MLTTracker("default")          # name 'MLT'; MLTTracker("mt") is 'MLT-mt'
    experiment.run(tracker); experiment.report([tracker.name])

Command line (works offline on a local root that holds only part of a benchmark; never downloads)::

    python -m tracker_wrappers.got10k --experiment otb --root /data/OTB100 [--params default]
        [--result-dir results] [--report-dir reports] [--frames N] [--workers N]

Experiments: otb (``--version 2015``/2013/tb50/tb100), uav123 (the 30 fps ``data_seq/UAV123`` layout
through got10k's reader, or the ``UAV123_10fps`` layout with its ``UAV123_10fps.json``), dtb70,
tcolor128, got10k (``--subset val``), lasot (``tracker_wrappers.lasot``). Results and reports keep the
toolkit's layout: ``results/<BENCH>/<tracker>/<seq>.txt`` (+ ``times/``) and
``reports/<BENCH>/<tracker>/performance.json`` + ``success_plots.png`` + ``precision_plots.png``.
Each result file is written atomically after its sequence finishes, so an interrupted run resumes at
the first unfinished sequence without redoing or corrupting saved ones.

Numbers printed: **success AUC** = the mean of the success curve over 21 IoU thresholds 0:0.05:1 (the
OTB/LaSOT "AUC"; it is exactly got10k's ``success_score`` here because the experiments run with
``nbins_iou=21``), **precision@20** = got10k's ``precision_score`` (share of frames with centre error
<= 20 px), and **fps** = got10k's ``speed_fps`` (mean over sequences of the per-frame 1/time, JPEG
decoding included). For GOT-10k, got10k reports AO (average overlap), SR0.5 and the success curve over
101 thresholds; its mean is printed as the AUC, which is within 0.01 of AO.

Coordinates: boxes go in and out exactly as the toolkit gives them (OTB-style annotation files are
1-based; the toolkit scores predictions in the same frame, so the one-pixel offset never enters a
score). Grey frames are converted to RGB by the toolkit.
"""
import argparse
import glob
import os
import sys

import numpy as np

if not os.environ.get("DISPLAY"):
    os.environ.setdefault("MPLBACKEND", "Agg")  # got10k imports pyplot; headless machines need Agg

from got10k.experiments import ExperimentOTB  # noqa: E402
from got10k.experiments.got10k import ExperimentGOT10k  # noqa: E402
from got10k.trackers import Tracker  # noqa: E402

EXPERIMENTS = ("otb", "uav123", "dtb70", "tcolor128", "got10k", "lasot")


def tracker_name(params: str) -> str:
    """'MLT' for the default parameter set, 'MLT-<name>' otherwise."""
    return "MLT" if params == "default" else f"MLT-{params}"


class MLTTracker(Tracker):
    """MLT behind got10k's ``init(image, box)`` / ``update(image) -> box`` (PIL RGB images, [x, y, w, h]).

    The network is built on first use, and a pickled tracker carries only its settings, so the
    tracker can be sent to worker processes.
    """

    def __init__(self, params="default", weights=None, device=None, name=None):
        param_name = params if isinstance(params, str) else params.get("name", "custom")
        super().__init__(name=name or tracker_name(param_name), is_deterministic=True)
        self.params, self.weights, self.device = params, weights, device
        self._mlt = None

    @property
    def mlt(self):
        if self._mlt is None:
            from mlt_plugin import MLT, load_parameters

            params = load_parameters(self.params) if isinstance(self.params, str) else self.params
            if self.weights:
                params.weights = self.weights
            if self.device:
                params.device = self.device
            self._mlt = MLT(params)
        return self._mlt

    def init(self, image, box):
        self.mlt.initialize(np.asarray(image), np.asarray(box, dtype=np.float64))

    def update(self, image):
        return np.asarray(self.mlt.track(np.asarray(image))["target_bbox"], dtype=np.float64)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_mlt"] = None
        return state


# ---------------------------------------------------------------------------------------------
# Datasets: got10k's readers where they work offline, ours where they do not.


class FirstFrames:
    """A got10k-style dataset limited to the first ``frames`` frames of every sequence."""

    def __init__(self, dataset, frames=None):
        if frames is not None and frames < 2:
            raise ValueError(f"--frames must be at least 2 (the first frame only initialises), got {frames}")
        self.dataset, self.frames = dataset, frames
        self.seq_names = list(dataset.seq_names)

    def __len__(self):
        return len(self.seq_names)

    def __getitem__(self, index):
        if isinstance(index, str):
            if index not in self.seq_names:
                raise KeyError(f"sequence {index} not found")
            index = self.seq_names.index(index)
        item = self.dataset[index]
        img_files, anno = item[0], item[1]
        if self.frames is not None:
            img_files, anno = img_files[: self.frames], anno[: self.frames]
        return (list(img_files), anno) + tuple(item[2:])


class SequenceDataset:
    """A got10k-style dataset over ``mlt_plugin.sequences.Sequence`` objects (0-based boxes)."""

    def __init__(self, sequences):
        if not sequences:
            raise ValueError("no sequences found")
        self.sequences = sequences
        self.seq_names = [s.name for s in sequences]

    def __len__(self):
        return len(self.sequences)

    def __getitem__(self, index):
        if isinstance(index, str):
            index = self.seq_names.index(index)
        seq = self.sequences[index]
        return [str(f) for f in seq.frames], np.asarray(seq.boxes, dtype=np.float64)


def _quietly(build):
    """Call ``build()`` with got10k's per-sequence 'not exists' warnings summarised in one line."""
    import contextlib
    import io

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        result = build()
    missing = [line for line in captured.getvalue().splitlines() if "not exist" in line]
    if missing:
        print(f"note: {len(missing)} sequences of the benchmark are not in this root (evaluating the rest)")
    return result


def load_dataset(experiment: str, root: str, version=None):
    """(dataset, benchmark name) for an OTB-style experiment on a local root; never downloads."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root {root} does not exist")
    if experiment == "otb":
        from got10k.datasets import OTB

        version = _otb_version(version or 2015)
        dataset = _quietly(lambda: OTB(root, version=version, download=False))
        name = f"OTB{version}"
    elif experiment == "uav123":
        if glob.glob(os.path.join(root, "UAV*.json")):  # UAV123_10fps layout (json + data_seq + anno)
            from mlt_plugin.sequences import load_sequences

            dataset = SequenceDataset(load_sequences(root))
            name = "UAV123_10fps"
        else:
            from got10k.datasets import UAV123

            version = (version or "UAV123").upper()
            dataset = _quietly(lambda: UAV123(root, version=version))
            name = version
    elif experiment == "dtb70":
        from got10k.datasets import DTB70

        dataset = _quietly(lambda: DTB70(root))
        name = "DTB70"
    elif experiment == "tcolor128":
        from got10k.datasets import TColor128

        dataset = _quietly(lambda: TColor128(root, download=False))
        name = "TColor128"
    else:
        raise ValueError(f"no OTB-style dataset for experiment {experiment!r}")
    if len(dataset) == 0:
        raise ValueError(f"no {name} sequences found under {root}")
    return dataset, name


def _otb_version(version):
    text = str(version).lower()
    if text in ("2013", "2015"):
        return int(text)
    if text in ("otb2013", "otb2015", "tb50", "tb100"):
        return text
    raise ValueError(f"unknown OTB version {version!r}: use 2013, 2015, tb50 or tb100")


# ---------------------------------------------------------------------------------------------
# Experiments with atomic result files and no download.


def save_text_atomic(path, array, fmt, delimiter=","):
    """np.savetxt to ``path`` through a temporary file and a rename: never a half-written file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    np.savetxt(tmp, array, fmt=fmt, delimiter=delimiter)
    os.replace(tmp, path)


class OfflineExperimentOTB(ExperimentOTB):
    """got10k's OTB one-pass experiment (also UAV123, DTB70, TColor128) around a given dataset object.

    ``nbins_iou=21`` and ``nbins_ce=51`` as in got10k's OTB experiment. Frames whose annotation has a
    NaN (UAV123's out-of-view frames) are left out of the scores, as got10k's ExperimentUAV123 does.
    """

    def __init__(self, dataset, benchmark, result_dir="results", report_dir="reports"):
        # No super().__init__(): got10k's constructor builds its own dataset with download=True.
        self.dataset = dataset
        self.result_dir = os.path.join(result_dir, benchmark)
        self.report_dir = os.path.join(report_dir, benchmark)
        self.nbins_iou = 21
        self.nbins_ce = 51

    def _record(self, record_file, boxes, times):
        # Times first, boxes last: the boxes file is what marks a sequence as done.
        time_file = os.path.join(os.path.dirname(record_file), "times",
                                 os.path.basename(record_file).replace(".txt", "_time.txt"))
        save_text_atomic(time_file, times, fmt="%.8f")
        save_text_atomic(record_file, boxes, fmt="%.3f")
        print("  Results recorded at", record_file)

    def _calc_metrics(self, boxes, anno):
        from got10k.utils.metrics import center_error, rect_iou

        valid = ~np.any(np.isnan(anno), axis=1)
        return rect_iou(boxes[valid], anno[valid]), center_error(boxes[valid], anno[valid])


class OfflineExperimentGOT10k(ExperimentGOT10k):
    """got10k's GOT-10k experiment with atomic result files (the dataset is read offline as is)."""

    def _record(self, record_file, boxes, times):
        time_file = record_file[: record_file.rfind("_")] + "_time.txt"
        repetition = int(record_file[record_file.rfind("_") + 1: -4])
        column = np.asarray(times, dtype=np.float64)[:, None]
        if os.path.exists(time_file):
            previous = np.loadtxt(time_file, delimiter=",", ndmin=2)
            # Keep the columns of earlier repetitions only (a crash may have left this one's column).
            column = np.concatenate((previous[:, : repetition - 1], column), axis=1)
        save_text_atomic(time_file, column, fmt="%.8f")
        save_text_atomic(record_file, boxes, fmt="%.3f")
        print("  Results recorded at", record_file)


def make_experiment(experiment, root, result_dir="results", report_dir="reports", frames=None,
                    version=None, subset="val"):
    """The experiment object for ``--experiment`` on a local root."""
    if experiment == "lasot":
        from tracker_wrappers.lasot import ExperimentLaSOT

        return ExperimentLaSOT(root, subset=subset or "test", result_dir=result_dir, report_dir=report_dir,
                               frames=frames)
    if experiment == "got10k":
        if frames is not None:
            raise ValueError("--frames is not supported for the GOT-10k experiment (its report reads full sequences)")
        if not os.path.isdir(os.path.join(root, subset)):
            raise FileNotFoundError(f"no {subset}/ folder under the GOT-10k root {root}")
        return OfflineExperimentGOT10k(root, subset=subset, result_dir=result_dir, report_dir=report_dir)
    if experiment not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {experiment!r}: choose from {', '.join(EXPERIMENTS)}")
    dataset, benchmark = load_dataset(experiment, root, version)
    if frames is not None:
        dataset, benchmark = FirstFrames(dataset, frames), f"{benchmark}-first{frames}"
    return OfflineExperimentOTB(dataset, benchmark, result_dir, report_dir)


def summarize(experiment, performance: dict, name: str) -> dict:
    """The headline numbers of a got10k performance dict: success AUC, precision@20, fps (+ AO for GOT-10k)."""
    overall = performance[name]["overall"]
    if "ao" in overall:  # GOT-10k
        return {"success_auc": float(np.mean(overall["succ_curve"])), "average_overlap": overall["ao"],
                "success_rate_0.5": overall["sr"], "fps": overall["speed_fps"]}
    out = {"success_auc": overall["success_score"], "precision_20": overall["precision_score"],
           "fps": overall["speed_fps"]}
    if "normalized_precision_score" in overall:
        out["normalized_precision"] = overall["normalized_precision_score"]
    return out


def print_summary(summary: dict, report_dir: str):
    if "average_overlap" in summary:
        print(f"  AO (average overlap, got10k 'ao'):          {summary['average_overlap']:.3f}")
        print(f"  SR0.5 (got10k 'sr'):                        {summary['success_rate_0.5']:.3f}")
        print(f"  success AUC (mean of the 101-bin curve):    {summary['success_auc']:.3f}")
    else:
        print(f"  success AUC (mean of the success curve over 21 IoU thresholds; got10k 'success_score'): "
              f"{summary['success_auc']:.3f}")
        print(f"  precision@20px (got10k 'precision_score'): {summary['precision_20']:.3f}")
        if "normalized_precision" in summary:
            print(f"  normalized precision (mean over 0..0.5):    {summary['normalized_precision']:.3f}")
    print(f"  speed: {summary['fps']:.1f} fps (got10k 'speed_fps': mean over sequences of 1/frame time, decode included)")
    print(f"  report: {report_dir}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tracker_wrappers.got10k",
        description="Run MLT through a got10k toolkit experiment on a local dataset root (offline; subsets "
        "of a benchmark are fine) and report success AUC, precision@20 and fps.",
    )
    parser.add_argument("--experiment", required=True, choices=EXPERIMENTS)
    parser.add_argument("--root", required=True, help="dataset root in the benchmark's own layout")
    parser.add_argument("--params", default="default", help="MLT parameter set (default, mt, mt_ft, ...)")
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--result-dir", default="results")
    parser.add_argument("--report-dir", default="reports")
    parser.add_argument("--frames", type=int, help="only the first N frames of every sequence (quick checks)")
    parser.add_argument("--version", help="otb: 2015 (default), 2013, tb50, tb100; uav123: UAV123 or UAV20L")
    parser.add_argument("--subset", default=None, help="got10k: val (default) or test; lasot: test (default) or all")
    parser.add_argument("--workers", type=int, default=1, help="lasot only: parallel worker processes")
    parser.add_argument("--visualize", action="store_true", help="show frames while tracking (needs a display)")
    parser.add_argument("--no-report", action="store_true", help="only run (e.g. one shard of a split run)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    tracker = MLTTracker(args.params, weights=args.weights, device=args.device)
    try:
        subset = args.subset or ("test" if args.experiment == "lasot" else "val")
        experiment = make_experiment(args.experiment, args.root, args.result_dir, args.report_dir, args.frames,
                                     args.version, subset)
        if args.experiment == "lasot":
            experiment.run(tracker, visualize=args.visualize, workers=args.workers)
        else:
            experiment.run(tracker, visualize=args.visualize)
        if args.no_report:
            return 0
        performance = experiment.report([tracker.name])
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if performance is None:  # GOT-10k test subset: results packed for the evaluation server
        return 0
    print(f"{tracker.name} on {os.path.basename(experiment.report_dir)}:")
    print_summary(summarize(experiment, performance, tracker.name),
                  os.path.join(experiment.report_dir, tracker.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
