"""LaSOT one-pass evaluation with the got10k experiment shape: ``ExperimentLaSOT(root).run(tracker)``, ``.report(names)``.

got10k 0.1.3 has no LaSOT experiment (and its LaSOT reader crashes), so this module reads the LaSOT
layout itself::

    ROOT/<class>/<class>-<n>/img/00000001.jpg ...   (a flat ROOT/<class>-<n>/ also works)
    ROOT/<class>/<class>-<n>/groundtruth.txt        x,y,w,h per frame, 1-based as released
    ROOT/<class>/<class>-<n>/full_occlusion.txt     0/1 per frame
    ROOT/<class>/<class>-<n>/out_of_view.txt        0/1 per frame

Protocols: ``subset='test'`` is protocol II, the official 280 test sequences (the list is embedded
below, as in the LaSOT paper and toolkit); sequences of that list missing from ROOT are reported and
skipped. ``subset='all'`` is protocol I, every sequence found under ROOT.

Scores, as the official LaSOT toolkit computes them (``mlt_plugin.metrics``): the prediction of the
first frame is replaced by the ground truth; frames where the target is absent (full occlusion or out
of view) or has no valid box count as failures and stay in the denominator; success AUC = mean of the
success curve over IoU thresholds 0:0.05:1; precision = share of frames with centre error <= 20 px;
normalised precision = mean of the normalised-precision curve over 0:0.01:0.5. Curves are averaged
over sequences. ``report()`` writes ``performance.json`` and ``success_plots.png``,
``precision_plots.png``, ``norm_precision_plots.png`` under ``report_dir/LaSOT/<tracker>/``.

Results: ``result_dir/LaSOT/<tracker>/<seq>.txt`` (comma-separated boxes in the annotation's
coordinates, the official toolkit's format) and ``times/<seq>_time.txt``, each written atomically
when its sequence ends; ``run()`` skips sequences that already have results, so an interrupted or
repeated run resumes. ``workers=N`` tracks N sequences at once in separate processes; ``shard=(i, n)``
runs only every n-th sequence starting at i (0-based), to split a benchmark across machines; copy the
result folders together and ``report()`` (``--report-only``) once all are in.

CLI::

    python -m tracker_wrappers.lasot --root /data/LaSOT --subset test [--params default]
        [--workers 2] [--shard 0/4] [--frames N] [--result-dir results] [--report-dir reports]
"""
import argparse
import json
import multiprocessing
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from mlt_plugin import metrics

# Protocol II: the official LaSOT test set, 4 sequences of each of the 70 classes (280 in all).
TEST_SET = {
    "airplane": (1, 9, 13, 15), "basketball": (1, 6, 7, 11), "bear": (2, 4, 6, 17),
    "bicycle": (2, 7, 9, 18), "bird": (2, 3, 15, 17), "boat": (3, 4, 12, 17), "book": (3, 10, 11, 19),
    "bottle": (1, 12, 14, 18), "bus": (2, 5, 17, 19), "car": (2, 6, 9, 17), "cat": (1, 3, 18, 20),
    "cattle": (2, 7, 12, 13), "chameleon": (3, 6, 11, 20), "coin": (3, 6, 7, 18), "crab": (3, 6, 12, 18),
    "crocodile": (3, 4, 10, 14), "cup": (1, 4, 7, 17), "deer": (4, 8, 10, 14), "dog": (1, 7, 15, 19),
    "drone": (2, 7, 13, 15), "electricfan": (1, 10, 18, 20), "elephant": (1, 12, 16, 18),
    "flag": (2, 3, 5, 9), "fox": (2, 3, 5, 20), "frog": (3, 4, 9, 20), "gametarget": (1, 2, 7, 13),
    "gecko": (1, 5, 16, 19), "giraffe": (2, 10, 13, 15), "goldfish": (3, 7, 8, 10),
    "gorilla": (4, 6, 9, 13), "guitar": (3, 8, 10, 16), "hand": (2, 3, 9, 16), "hat": (1, 2, 5, 18),
    "helmet": (5, 11, 13, 19), "hippo": (1, 7, 9, 20), "horse": (1, 4, 12, 15),
    "kangaroo": (2, 5, 11, 14), "kite": (4, 6, 10, 15), "leopard": (1, 7, 16, 20),
    "licenseplate": (6, 12, 13, 15), "lion": (1, 5, 12, 20), "lizard": (1, 3, 6, 13),
    "microphone": (2, 6, 14, 16), "monkey": (3, 4, 9, 17), "motorcycle": (1, 3, 9, 18),
    "mouse": (1, 8, 9, 17), "person": (1, 5, 10, 12), "pig": (2, 10, 13, 18), "pool": (3, 7, 12, 15),
    "rabbit": (10, 13, 17, 19), "racing": (10, 15, 16, 20), "robot": (1, 5, 8, 19),
    "rubicCube": (1, 6, 14, 19), "sepia": (6, 8, 13, 16), "shark": (2, 3, 5, 6), "sheep": (3, 5, 7, 9),
    "skateboard": (3, 8, 16, 19), "spider": (14, 16, 18, 20), "squirrel": (8, 11, 13, 19),
    "surfboard": (4, 5, 8, 12), "swing": (10, 14, 17, 20), "tank": (6, 9, 14, 16), "tiger": (4, 6, 12, 18),
    "train": (1, 7, 11, 20), "truck": (3, 6, 7, 16), "turtle": (5, 8, 9, 16), "umbrella": (2, 9, 17, 19),
    "volleyball": (1, 13, 18, 19), "yoyo": (7, 15, 17, 19), "zebra": (10, 14, 16, 17),
}
SEQUENCE_NAME = re.compile(r"^([A-Za-z]+)-(\d+)$")


def test_sequence_names() -> list:
    """The 280 sequence names of LaSOT protocol II, sorted."""
    return sorted(f"{cls}-{n}" for cls, numbers in TEST_SET.items() for n in numbers)


class LaSOTDataset:
    """LaSOT sequences under ``root``: ``seq_names``, ``len()``, ``[i or name] -> (img_files, anno, visible)``.

    ``anno`` holds the ground-truth values as released (1-based x, y); ``visible`` is False where the
    target is fully occluded or out of view. ``frames`` keeps only the first N frames of each sequence.
    """

    def __init__(self, root, subset="test", frames=None):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"LaSOT root {root} does not exist")
        if subset not in ("test", "all"):
            raise ValueError(f"subset must be 'test' (protocol II, 280 sequences) or 'all' (protocol I), got {subset!r}")
        if frames is not None and frames < 2:
            raise ValueError(f"frames must be at least 2, got {frames}")
        self.root, self.subset, self.frames = root, subset, frames
        found = self._find(root)
        if subset == "test":
            wanted = test_sequence_names()
            self.missing = [name for name in wanted if name not in found]
            names = [name for name in wanted if name in found]
            if self.missing:
                print(f"note: {len(self.missing)} of the 280 LaSOT test sequences are not under {root} "
                      f"(first: {', '.join(self.missing[:3])}); evaluating the {len(names)} present")
        else:
            self.missing = []
            names = sorted(found)
        if not names:
            raise ValueError(f"no LaSOT sequences ({subset} subset) under {root}: expected "
                             "<class>/<class>-<n>/groundtruth.txt + img/")
        self.seq_dirs = {name: found[name] for name in names}
        self.seq_names = names

    @staticmethod
    def _find(root: Path) -> dict:
        found = {}
        candidates = list(root.glob("*/groundtruth.txt")) + list(root.glob("*/*/groundtruth.txt"))
        for gt in candidates:
            folder = gt.parent
            if SEQUENCE_NAME.match(folder.name) and (folder / "img").is_dir():
                found.setdefault(folder.name, folder)
        return found

    def __len__(self):
        return len(self.seq_names)

    def __getitem__(self, index):
        from mlt_plugin.sequences import read_boxes, read_flags

        name = index if isinstance(index, str) else self.seq_names[index]
        folder = self.seq_dirs[name]
        anno = read_boxes(folder / "groundtruth.txt", one_based=False)  # values as released
        hidden = np.zeros(len(anno), dtype=bool)
        for flag_file in ("full_occlusion.txt", "out_of_view.txt"):
            if (folder / flag_file).is_file():
                flags = read_flags(folder / flag_file)[: len(anno)]
                hidden[: len(flags)] |= flags
        count = len(anno) if self.frames is None else min(self.frames, len(anno))
        img_files = [str(folder / "img" / f"{i:08d}.jpg") for i in range(1, count + 1)]
        if not os.path.isfile(img_files[-1]):
            raise FileNotFoundError(f"{name}: frame {img_files[-1]} is missing ({len(anno)} ground-truth lines)")
        return img_files, anno[:count], ~hidden[:count]


def save_text_atomic(path, array, fmt):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    np.savetxt(tmp, array, fmt=fmt, delimiter=",")
    os.replace(tmp, path)


def _write_json_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


# Worker-process state for run(workers > 1): one tracker per process, built once.
_WORKER_TRACKER = None


def _init_worker(tracker, threads):
    global _WORKER_TRACKER
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    _WORKER_TRACKER = tracker


def _track_job(job):
    name, img_files, box, record_file = job
    boxes, times = _WORKER_TRACKER.track(img_files, box, visualize=False)
    _record(record_file, boxes, times)
    return name, len(times) / max(float(np.sum(times)), 1e-9)


def _record(record_file, boxes, times):
    """Times first, boxes last (atomically): the boxes file marks the sequence as done."""
    time_file = os.path.join(os.path.dirname(record_file), "times",
                             os.path.basename(record_file).replace(".txt", "_time.txt"))
    save_text_atomic(time_file, np.asarray(times)[:, None], fmt="%.8f")
    save_text_atomic(record_file, boxes, fmt="%.3f")


def parse_shard(text):
    """'i/n' -> (i, n) with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"shard must be i/n with 0 <= i < n (e.g. 0/4), got {text!r}")
    return int(match.group(1)), int(match.group(2))


class ExperimentLaSOT:
    """LaSOT OPE experiment: ``run(tracker, visualize=False, workers=1)`` and ``report(tracker_names)``."""

    def __init__(self, root_dir, subset="test", result_dir="results", report_dir="reports", frames=None,
                 shard=None):
        self.dataset = LaSOTDataset(root_dir, subset, frames)
        benchmark = "LaSOT" if subset == "test" else "LaSOT-all"
        if frames is not None:
            benchmark += f"-first{frames}"
        self.result_dir = os.path.join(result_dir, benchmark)
        self.report_dir = os.path.join(report_dir, benchmark)
        self.shard = parse_shard(shard) if isinstance(shard, str) else shard
        self.nbins_iou, self.nbins_ce = len(metrics.SUCCESS_THRESHOLDS), len(metrics.PRECISION_THRESHOLDS)

    def shard_names(self) -> list:
        names = self.dataset.seq_names
        if self.shard is None:
            return list(names)
        index, count = self.shard
        return list(names[index::count])

    def record_file(self, tracker_name, seq_name):
        return os.path.join(self.result_dir, tracker_name, f"{seq_name}.txt")

    def run(self, tracker, visualize=False, workers=1):
        names = self.shard_names()
        todo = [n for n in names if not os.path.exists(self.record_file(tracker.name, n))]
        shard = "" if self.shard is None else f" (shard {self.shard[0]}/{self.shard[1]})"
        print(f"Running tracker {tracker.name} on LaSOT ({self.dataset.subset}){shard}: "
              f"{len(names)} sequences, {len(names) - len(todo)} already done")
        if not todo:
            return
        jobs = []
        for name in todo:
            img_files, anno, _ = self.dataset[name]
            jobs.append((name, img_files, anno[0], self.record_file(tracker.name, name)))
        started = time.perf_counter()
        if workers <= 1 or visualize:
            for count, (name, img_files, box, record_file) in enumerate(jobs, 1):
                boxes, times = tracker.track(img_files, box, visualize=visualize)
                _record(record_file, boxes, times)
                print(f"--Sequence {count}/{len(jobs)}: {name} ({len(times) / max(np.sum(times), 1e-9):.1f} fps)")
        else:
            threads = max(1, (os.cpu_count() or 1) // workers)
            context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
            with context.Pool(workers, initializer=_init_worker, initargs=(tracker, threads)) as pool:
                for count, (name, fps) in enumerate(pool.imap_unordered(_track_job, jobs), 1):
                    print(f"--Sequence {count}/{len(jobs)}: {name} ({fps:.1f} fps)")
        print(f"Finished {len(jobs)} sequences in {time.perf_counter() - started:.1f} s; results in "
              f"{os.path.join(self.result_dir, tracker.name)}")

    def missing_results(self, tracker_name) -> list:
        return [n for n in self.dataset.seq_names if not os.path.exists(self.record_file(tracker_name, n))]

    def report(self, tracker_names):
        from mlt_plugin.sequences import read_boxes

        if isinstance(tracker_names, str):
            tracker_names = [tracker_names]
        assert isinstance(tracker_names, (list, tuple)) and tracker_names, "give a list of tracker names"
        report_dir = os.path.join(self.report_dir, tracker_names[0])
        os.makedirs(report_dir, exist_ok=True)
        performance = {}
        for name in tracker_names:
            missing = self.missing_results(name)
            if missing:
                raise ValueError(
                    f"{name}: no results for {len(missing)} of {len(self.dataset)} sequences (first: "
                    f"{', '.join(missing[:3])}); run them (all shards), or copy the shards' result folders "
                    f"into {os.path.join(self.result_dir, name)}"
                )
            seq_wise, curves = {}, {"success": [], "precision": [], "norm": []}
            speeds = []
            for seq_name in self.dataset.seq_names:
                _, anno, visible = self.dataset[seq_name]
                boxes = read_boxes(self.record_file(name, seq_name), one_based=False)
                if len(boxes) < len(anno):
                    raise ValueError(f"{name}/{seq_name}: {len(boxes)} result boxes for {len(anno)} frames")
                summary = metrics.ope_summary(boxes[: len(anno)], anno, valid=visible)
                speed = self._speed(name, seq_name)
                speeds.append(speed)
                curves["success"].append(summary["success_curve"])
                curves["precision"].append(summary["precision_curve"])
                curves["norm"].append(summary["normalized_precision_curve"])
                seq_wise[seq_name] = {
                    "success_curve": summary["success_curve"].tolist(),
                    "precision_curve": summary["precision_curve"].tolist(),
                    "normalized_precision_curve": summary["normalized_precision_curve"].tolist(),
                    "success_score": summary["success_auc"],
                    "precision_score": summary["precision_20"],
                    "normalized_precision_score": summary["normalized_precision"],
                    "speed_fps": speed if speed > 0 else -1,
                }
            success = np.mean(curves["success"], axis=0)
            precision = np.mean(curves["precision"], axis=0)
            norm = np.mean(curves["norm"], axis=0)
            positive = [s for s in speeds if s > 0]
            performance[name] = {
                "overall": {
                    "success_curve": success.tolist(),
                    "precision_curve": precision.tolist(),
                    "normalized_precision_curve": norm.tolist(),
                    "success_score": metrics.auc(success),
                    "precision_score": float(precision[20]),
                    "normalized_precision_score": metrics.auc(norm),
                    "success_rate": float(success[len(success) // 2]),
                    "speed_fps": float(np.mean(positive)) if positive else -1,
                    "sequences": len(self.dataset),
                },
                "seq_wise": seq_wise,
            }
        _write_json_atomic(os.path.join(report_dir, "performance.json"), performance)
        self.plot_curves(performance, report_dir)
        return performance

    def _speed(self, name, seq_name):
        time_file = os.path.join(self.result_dir, name, "times", f"{seq_name}_time.txt")
        if not os.path.isfile(time_file):
            return -1.0
        times = np.loadtxt(time_file, delimiter=",", ndmin=1).reshape(-1)
        times = times[times > 0]
        return float(np.mean(1.0 / times)) if len(times) else -1.0

    def plot_curves(self, performance, report_dir):
        import matplotlib

        if not os.environ.get("DISPLAY"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        title = "LaSOT" if self.dataset.subset == "test" else "LaSOT (all sequences)"
        plots = (
            ("success_plots.png", "success_curve", "success_score", metrics.SUCCESS_THRESHOLDS,
             "Overlap threshold", "Success rate", f"Success plots of OPE on {title}", (0, 1)),
            ("precision_plots.png", "precision_curve", "precision_score", metrics.PRECISION_THRESHOLDS,
             "Location error threshold (px)", "Precision", f"Precision plots of OPE on {title}", (0, 50)),
            ("norm_precision_plots.png", "normalized_precision_curve", "normalized_precision_score",
             metrics.NORMALIZED_PRECISION_THRESHOLDS, "Normalized location error threshold",
             "Normalized precision", f"Normalized precision plots of OPE on {title}", (0, 0.5)),
        )
        for filename, curve_key, score_key, xs, xlabel, ylabel, plot_title, xlim in plots:
            ranked = sorted(performance, key=lambda n: -performance[n]["overall"][score_key])
            fig, ax = plt.subplots(figsize=(6, 4.5))
            for i, name in enumerate(ranked):
                overall = performance[name]["overall"]
                ax.plot(xs, overall[curve_key], ["-", "--", "-."][i // 10 % 3],
                        label=f"{name} [{overall[score_key]:.3f}]")
            ax.set(xlabel=xlabel, ylabel=ylabel, title=plot_title, xlim=xlim, ylim=(0, 1))
            ax.grid(True)
            ax.legend(loc="lower left" if curve_key == "success_curve" else "lower right", fontsize=8)
            fig.tight_layout()
            fig.savefig(os.path.join(report_dir, filename), dpi=150)
            plt.close(fig)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tracker_wrappers.lasot",
        description="Run MLT on LaSOT (protocol II: --subset test, the 280 test sequences; protocol I: --subset all) "
        "and report success AUC, precision@20 and normalised precision.",
    )
    parser.add_argument("--root", required=True, help="LaSOT root: <class>/<class>-<n>/img + groundtruth.txt")
    parser.add_argument("--subset", choices=("test", "all"), default="test")
    parser.add_argument("--params", default="default", help="MLT parameter set (default, mt, mt_ft, ...)")
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=1, help="sequences tracked in parallel processes")
    parser.add_argument("--shard", help="i/n: run only sequences i, i+n, i+2n, ... (split across machines)")
    parser.add_argument("--frames", type=int, help="only the first N frames of every sequence (quick checks)")
    parser.add_argument("--result-dir", default="results")
    parser.add_argument("--report-dir", default="reports")
    parser.add_argument("--report-only", action="store_true", help="do not track; report the saved results")
    parser.add_argument("--no-report", action="store_true", help="only track")
    return parser


def main(argv=None):
    from tracker_wrappers.got10k import MLTTracker, print_summary, summarize

    args = build_parser().parse_args(argv)
    tracker = MLTTracker(args.params, weights=args.weights, device=args.device)
    try:
        experiment = ExperimentLaSOT(args.root, args.subset, args.result_dir, args.report_dir, args.frames,
                                     args.shard)
        if not args.report_only:
            experiment.run(tracker, workers=args.workers)
        if args.no_report:
            return 0
        missing = experiment.missing_results(tracker.name)
        if missing and experiment.shard is not None and not args.report_only:
            print(f"shard done; {len(missing)} sequences of other shards have no results here yet: "
                  "collect all shards' results, then run again with --report-only")
            return 0
        performance = experiment.report([tracker.name])
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{tracker.name} on {os.path.basename(experiment.report_dir)} ({len(experiment.dataset)} sequences):")
    print_summary(summarize(experiment, performance, tracker.name), os.path.join(experiment.report_dir, tracker.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
