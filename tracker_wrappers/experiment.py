"""The got10k experiment shape (``run(tracker)``, ``report(names)``) over MLT's evaluation core, and the
command line the got10k runner and the LaSOT experiment share."""
import os
import sys

from mlt_plugin.evaluation.report import print_summary, report
from mlt_plugin.evaluation.results import load_result, result_files
from mlt_plugin.evaluation.running import TrackerSpec, parse_shard, run, tracker_name
from mlt_plugin.evaluation.scoring import performance


class Experiment:
    """``run(tracker, workers=1)`` and ``report(tracker_names)`` on a list of sequences.

    Results go to ``result_dir/<benchmark>[-firstN]/<tracker>/``, reports to
    ``report_dir/<benchmark>[-firstN]/<first tracker>/`` (performance.json + plots).
    """

    def __init__(self, sequences, benchmark, result_dir="results", report_dir="reports", frames=None, shard=None,
                 starts=1):
        if frames is not None and frames < 2:
            raise ValueError(f"--frames must be at least 2 (the first frame only initialises), got {frames}")
        self.sequences, self.benchmark, self.frames, self.starts = list(sequences), benchmark, frames, starts
        self.shard = parse_shard(shard)
        folder = benchmark if frames is None else f"{benchmark}-first{frames}"
        self.result_dir, self.report_dir = os.path.join(result_dir, folder), os.path.join(report_dir, folder)

    @property
    def seq_names(self):
        return [s.name for s in self.sequences]

    def shard_names(self):
        shard = self.shard or (0, 1)
        return self.seq_names[shard[0]::shard[1]]

    def run(self, tracker, visualize=False, workers=1):
        """Track every sequence of this shard that has no saved result yet (``visualize`` is not supported)."""
        print(f"{self.benchmark}: {len(self.shard_names())} sequences" + (f" (shard {self.shard[0]}/{self.shard[1]})"
                                                                          if self.shard else ""))
        run([tracker], self.sequences, self.result_dir, self.starts, workers, self.shard, self.frames)

    def missing_results(self, tracker_name):
        return [s.name for s in self.sequences
                if not result_files(self.result_dir, tracker_name, s.name)[0].is_file()]

    def report(self, tracker_names):
        tracker_names = [tracker_names] if isinstance(tracker_names, str) else list(tracker_names)
        results = {name: {s.name: [load_result(self.result_dir, name, s, k, self.frames) for k in range(self.starts)]
                          for s in self.sequences} for name in tracker_names}
        perf = performance(results, self.sequences)
        report(perf, os.path.join(self.report_dir, tracker_names[0]), self.benchmark)
        return perf


def add_runner_arguments(parser):
    """The options every runner's command line shares (the got10k runner, the LaSOT experiment)."""
    from mlt_plugin.params import parameter_set_names

    parser.add_argument("--params", default="default",
                        help="MLT parameter set: " + ", ".join(parameter_set_names()) + " (default: default)")
    parser.add_argument("--weights", help="weights file (default: the shipped weights)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=1, help="sequences tracked in parallel processes")
    parser.add_argument("--shard", help="i/n: only sequences i, i+n, i+2n, ... (split across machines; then --report-only)")
    parser.add_argument("--frames", type=int, help="only the first N frames of every sequence (quick checks)")
    parser.add_argument("--result-dir", default="results")
    parser.add_argument("--report-dir", default="reports")
    parser.add_argument("--report-only", action="store_true", help="do not track; report the saved results")
    parser.add_argument("--no-report", action="store_true", help="only track (e.g. one shard of a split run)")


def runner_main(args, make_experiment, run=None) -> int:
    """What the runners' command lines do: check the parameter set, build the experiment, ``run`` it
    (default ``run_experiment``); a bad input is one line on stderr and exit status 2."""
    from mlt_plugin.params import load_parameters

    overrides = {k: v for k, v in (("weights", args.weights), ("device", args.device)) if v}
    tracker = TrackerSpec(tracker_name(args.params), args.params, overrides)
    try:
        load_parameters(args.params)  # an unknown name fails here, not in a worker
        return (run or run_experiment)(make_experiment(), tracker, args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run_experiment(experiment, tracker, args) -> int:
    """Run, then report and print unless only a shard ran (``args``: the runner options)."""
    if not args.report_only:
        experiment.run(tracker, workers=args.workers)
    missing = experiment.missing_results(tracker.name)
    if args.no_report or (missing and experiment.shard is not None and not args.report_only):
        if missing:
            print(f"{len(missing)} sequences have no results yet (other shards): collect all shards' results in "
                  f"{experiment.result_dir}, then run again with --report-only")
        return 0
    perf = experiment.report([tracker.name])
    print_summary(perf, tracker.name, os.path.join(experiment.report_dir, tracker.name))
    return 0
