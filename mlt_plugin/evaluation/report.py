"""Reports of scored results (``scoring``): text tables, ``performance.json`` and the success, precision and
normalised precision plots, and the headline lines the runners print."""
import json
from pathlib import Path

from mlt_plugin import metrics
from mlt_plugin.files import write_text_atomic


def table(perf: dict) -> str:
    """Per-sequence and overall success AUC (mean over starts, with min-max when several), P@20, fps."""
    names = list(perf)
    sequences = list(next(iter(perf.values()))["seq_wise"])

    def cell(entry):
        spread = f" ({entry['success_score_min']:.3f}-{entry['success_score_max']:.3f})" if entry["starts"] > 1 else ""
        return f"{entry['success_score']:>7.3f}{spread:>14}{entry['precision_score']:>7.3f}{entry['speed_fps']:>7.1f}"

    width = 16 + 35 * len(names)
    header = f"{'sequence':<16}" + "".join(f"{n + ' AUC':>21}{'P@20':>7}{'fps':>7}" for n in names)
    lines = [header, "-" * width]
    lines += [f"{seq:<16}" + "".join(cell(perf[n]["seq_wise"][seq]) for n in names) for seq in sequences]
    lines += ["-" * width, f"{'overall':<16}" + "".join(cell(perf[n]["overall"]) for n in names)]
    return "\n".join(lines)


def restart_table(perf: dict) -> str:
    """Per-sequence and overall restart numbers: mean overlap, accuracy, failures (per 100 frames overall), fps."""
    names = list(perf)
    sequences = list(next(iter(perf.values()))["seq_wise"])

    def cell(entry, failures):
        return f"{entry['mean_overlap']:>12.3f}{entry['accuracy']:>7.3f}{failures:>10}{entry['speed_fps']:>7.1f}"

    width = 16 + 36 * len(names)
    header = f"{'sequence':<16}" + "".join(f"{n[:11] + ' overlap':>20}{'acc':>7}{'fail':>10}{'fps':>7}" for n in names)
    lines = [header, "-" * width]
    lines += [f"{seq:<16}" + "".join(cell(perf[n]["seq_wise"][seq], perf[n]["seq_wise"][seq]["failures"]) for n in names)
              for seq in sequences]
    overall = [perf[n]["overall"] for n in names]
    lines += ["-" * width, f"{'overall':<16}" + "".join(cell(o, f"{o['failures_per_100']:.2f}/100") for o in overall),
              f"{'EAO':<16}" + "".join(f"{o['eao']:>12.3f}{'':>24}" for o in overall)
              + f"   (lengths {overall[0]['eao_range'][0]}-{overall[0]['eao_range'][1]})"]
    return "\n".join(lines)


def report(perf: dict, report_dir, title="OPE", filename="performance.json") -> Path:
    """Write ``filename`` (JSON) and the plots into ``report_dir``; returns the JSON path."""
    report_dir = Path(report_dir)
    write_text_atomic(report_dir / filename, json.dumps(perf, indent=1))
    plot_curves(perf, report_dir, title)
    return report_dir / filename


def plot_curves(perf: dict, report_dir, title="OPE"):
    """success_plots.png, precision_plots.png, norm_precision_plots.png: one curve per tracker, ranked."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    plots = (
        ("success_plots.png", "success_curve", "success_score", metrics.SUCCESS_THRESHOLDS,
         "Overlap threshold", "Success rate", "Success plots", (0, 1)),
        ("precision_plots.png", "precision_curve", "precision_score", metrics.PRECISION_THRESHOLDS,
         "Location error threshold (px)", "Precision", "Precision plots", (0, 50)),
        ("norm_precision_plots.png", "normalized_precision_curve", "normalized_precision_score",
         metrics.NORMALIZED_PRECISION_THRESHOLDS, "Normalized location error threshold", "Normalized precision",
         "Normalized precision plots", (0, 0.5)),
    )
    for filename, curve_key, score_key, xs, xlabel, ylabel, what, xlim in plots:
        ranked = sorted(perf, key=lambda n: -perf[n]["overall"][score_key])
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for i, name in enumerate(ranked):
            overall = perf[name]["overall"]
            ax.plot(xs, overall[curve_key], ["-", "--", "-."][i // 10 % 3], label=f"{name} [{overall[score_key]:.3f}]")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{what} of {title}", xlim=xlim, ylim=(0, 1))
        ax.grid(True)
        ax.legend(loc="lower left" if curve_key == "success_curve" else "lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(Path(report_dir) / filename, dpi=120)
        plt.close(fig)


def print_summary(perf: dict, name: str, report_dir):
    """The headline numbers of one tracker, with what each one is."""
    overall = perf[name]["overall"]
    spread = (f" (over {overall['starts']} starts: std {overall['success_score_std']:.3f}, "
              f"min {overall['success_score_min']:.3f}, max {overall['success_score_max']:.3f})"
              if overall["starts"] > 1 else "")
    print(f"{name} on {overall['sequences']} sequences, {overall['frames']} frames:")
    print(f"  success AUC (mean of the success curve over 21 IoU thresholds; got10k 'success_score'): "
          f"{overall['success_score']:.3f}{spread}")
    print(f"  precision@20px: {overall['precision_score']:.3f}")
    print(f"  normalized precision (mean over 0..0.5): {overall['normalized_precision_score']:.3f}")
    print(f"  speed: {overall['speed_fps']:.1f} fps (frames / seconds in the tracker's calls, decoding excluded)")
    print(f"  report: {report_dir}")
