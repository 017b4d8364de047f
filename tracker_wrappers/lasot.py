"""LaSOT one-pass evaluation with the got10k experiment shape: ``ExperimentLaSOT(root).run(tracker)``, ``.report(names)``.

got10k 0.1.3 has no LaSOT experiment (and its LaSOT reader crashes). This module only knows what is
LaSOT's own: where the sequences are and which 280 form the test set. Reading, running, scoring and
plotting are MLT's evaluation core (``mlt_plugin.evaluation``), the same as `mlt eval` and the got10k
runner use::

    ROOT/<class>/<class>-<n>/img/00000001.jpg ...   (a flat ROOT/<class>-<n>/ also works)
    ROOT/<class>/<class>-<n>/groundtruth.txt        x,y,w,h per frame, 1-based as released
    ROOT/<class>/<class>-<n>/full_occlusion.txt, out_of_view.txt   0/1 per frame

Protocols: ``subset='test'`` is protocol II, the official 280 test sequences (sequences of that list
missing from ROOT are reported and skipped); ``subset='all'`` is protocol I, every sequence found.
Scores as the official LaSOT toolkit computes them: absent frames (full occlusion or out of view)
count as failures and stay in the denominator; success AUC, precision@20 px, normalised precision.
Results: ``result_dir/LaSOT/<tracker>/<seq>.txt`` in the official format (1-based), written atomically;
a rerun skips finished sequences. ``workers=N`` tracks N sequences at once; ``shard='i/n'`` only every
n-th sequence from i, to split the benchmark across machines (then ``--report-only``).

CLI::

    python -m tracker_wrappers.lasot --root /data/LaSOT --subset test [--params default]
        [--workers 2] [--shard 0/4] [--frames N] [--result-dir results] [--report-dir reports]

``--params``: any MLT parameter set (``--help`` lists them); results go to ``MLT`` for default,
``MLT-<set>`` otherwise.
"""
import argparse
import re
import sys
from pathlib import Path

from mlt_plugin.sequences import load_sequence
from tracker_wrappers.experiment import Experiment, add_runner_arguments, runner_main

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


def find_sequences(root, subset="test") -> list:
    """The LaSOT sequence folders of ``subset`` under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LaSOT root {root} does not exist")
    if subset not in ("test", "all"):
        raise ValueError(f"subset must be 'test' (protocol II, 280 sequences) or 'all' (protocol I), got {subset!r}")
    found = {}
    for gt in sorted(root.glob("*/groundtruth.txt")) + sorted(root.glob("*/*/groundtruth.txt")):
        if SEQUENCE_NAME.match(gt.parent.name) and (gt.parent / "img").is_dir():
            found.setdefault(gt.parent.name, gt.parent)
    names = sorted(found)
    if subset == "test":
        missing = [n for n in test_sequence_names() if n not in found]
        names = [n for n in test_sequence_names() if n in found]
        if missing:
            print(f"note: {len(missing)} of the 280 LaSOT test sequences are not under {root} "
                  f"(first: {', '.join(missing[:3])}); evaluating the {len(names)} present")
    if not names:
        raise ValueError(f"no LaSOT sequences ({subset} subset) under {root}: expected "
                         "<class>/<class>-<n>/groundtruth.txt + img/")
    return [found[n] for n in names]


class ExperimentLaSOT(Experiment):
    """LaSOT OPE experiment: ``run(tracker, visualize=False, workers=1)`` and ``report(tracker_names)``."""

    def __init__(self, root_dir, subset="test", result_dir="results", report_dir="reports", frames=None,
                 shard=None):
        sequences = [load_sequence(folder) for folder in find_sequences(root_dir, subset)]
        super().__init__(sequences, "LaSOT" if subset == "test" else "LaSOT-all", result_dir, report_dir, frames, shard)
        self.subset = subset


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m tracker_wrappers.lasot",
        description="Run MLT on LaSOT (protocol II: --subset test, the 280 test sequences; protocol I: --subset all) "
        "and report success AUC, precision@20 and normalised precision.",
    )
    parser.add_argument("--root", required=True, help="LaSOT root: <class>/<class>-<n>/img + groundtruth.txt")
    parser.add_argument("--subset", choices=("test", "all"), default="test")
    add_runner_arguments(parser)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return runner_main(args, lambda: ExperimentLaSOT(args.root, args.subset, args.result_dir,
                                                                args.report_dir, args.frames, args.shard))


if __name__ == "__main__":
    sys.exit(main())
