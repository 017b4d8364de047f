"""The one scorer: ``score`` for one run, ``performance`` (one-pass) and ``restart_performance`` (restart) for
the runner's results, in got10k's shape ``{tracker: {"overall": ..., "seq_wise": {seq: ...}}}`` and names."""
import numpy as np

from mlt_plugin import metrics


def score(boxes, sequence) -> dict:
    """All one-pass numbers of one run on ``sequence`` from its first box on (``metrics.ope_summary``; a TRE
    start's earlier rows are NaN)."""
    n, first = len(boxes), int(np.argmax(np.isfinite(boxes).all(1)))
    return metrics.ope_summary(boxes[first:], sequence.boxes[first:n], valid=sequence.visible[first:n])


def _spread(values, key):
    values = np.asarray(values, dtype=np.float64)
    return {key: float(values.mean()), f"{key}_std": float(values.std()), f"{key}_min": float(values.min()),
            f"{key}_max": float(values.max())}


def _entry(summaries, frames, seconds) -> dict:
    """Scores of a list of runs (one per start, or per sequence x start): mean curves and their scores."""
    curves = {k: np.mean([s[k] for s in summaries], axis=0)
              for k in ("success_curve", "precision_curve", "normalized_precision_curve")}
    entry = {k: v.tolist() for k, v in curves.items()}
    entry.update(
        success_score=metrics.auc(curves["success_curve"]),
        precision_score=float(curves["precision_curve"][20]),
        normalized_precision_score=metrics.auc(curves["normalized_precision_curve"]),
        success_rate=float(curves["success_curve"][10]),  # IoU > 0.5
        frames=int(frames),
        speed_fps=float(frames / seconds) if seconds > 0 else -1.0,
    )
    return entry


def _check_complete(name, per_sequence):
    missing = [seq for seq, runs in per_sequence.items() if any(r is None for r in runs)]
    if missing:
        raise ValueError(f"{name}: no results for {len(missing)} of {len(per_sequence)} sequences (first: "
                         f"{', '.join(missing[:3])}); run them (all shards) into the same result folder")


def performance(results, sequences) -> dict:
    """One-pass scores of ``running.run``'s results: per sequence the mean over its starts (with the spread of
    ``success_score`` over starts), overall the mean curves over sequences and starts."""
    by_name = {s.name: s for s in sequences}
    out = {}
    for name, per_sequence in results.items():
        _check_complete(name, per_sequence)
        seq_wise, per_start = {}, None
        frames = seconds = 0
        for seq_name, runs in per_sequence.items():
            summaries = [score(boxes, by_name[seq_name]) for boxes, _ in runs]
            n = sum(np.count_nonzero(t) for _, t in runs)
            s = float(np.nansum([np.sum(t) for _, t in runs]))
            entry = _entry(summaries, n, s)
            entry.update(_spread([x["success_score"] for x in summaries], "success_score"), starts=len(runs))
            seq_wise[seq_name] = entry
            per_start = [[] for _ in runs] if per_start is None else per_start
            for k, summary in enumerate(summaries):
                per_start[k].append(summary)
            frames, seconds = frames + n, seconds + s
        overall = _entry([x for runs in per_start for x in runs], frames, seconds)
        overall.update(_spread([np.mean([x["success_score"] for x in runs]) for runs in per_start], "success_score"),
                       starts=len(per_start), sequences=len(seq_wise))
        out[name] = {"overall": overall, "seq_wise": seq_wise}
    return out


def restart_performance(results, sequences) -> dict:
    """Restart scores of ``running.run``'s restart results (``metrics.restart_summary`` per sequence).

    Overall: ``mean_overlap`` is the mean over sequences (the paired intervals compare these);
    ``accuracy`` weights sequences by their frames and ``failures_per_100`` pools them, as vot-toolkit's
    average AR analysis does; ``eao`` is VOT's expected average overlap over all runs' segments, averaged
    over the lengths ``eao_range`` (the middle half of these sequences' lengths).
    """
    by_name = {s.name: s for s in sequences}
    eao_range = metrics.eao_range([len(runs[0][0]) for runs in next(iter(results.values())).values() if runs[0]])
    out = {}
    for name, per_sequence in results.items():
        _check_complete(name, per_sequence)
        seq_wise, segments = {}, []
        for seq_name, [(boxes, seconds, states)] in per_sequence.items():
            sequence = by_name[seq_name]
            summary = metrics.restart_summary(boxes, states, sequence.boxes[:len(boxes)], sequence.visible[:len(boxes)])
            segments += summary.pop("segments")
            summary["seconds"] = float(np.nansum(seconds))
            summary["speed_fps"] = np.count_nonzero(seconds) / max(summary["seconds"], 1e-9)
            seq_wise[seq_name] = summary
        entries = list(seq_wise.values())
        frames = sum(e["frames"] for e in entries)
        seconds = sum(e["seconds"] for e in entries)
        overall = {
            "mean_overlap": float(np.mean([e["mean_overlap"] for e in entries])),
            "accuracy": sum(e["accuracy"] * e["frames"] for e in entries) / max(frames, 1),
            "failures": sum(e["failures"] for e in entries),
            "failures_per_100": 100.0 * sum(e["failures"] for e in entries) / max(frames, 1),
            "on_target": float(np.mean([e["on_target"] for e in entries])),
            "eao": metrics.expected_average_overlap(segments, *eao_range),
            "eao_range": list(eao_range),
            "frames": frames,
            "sequences": len(entries),
            "speed_fps": sum(np.count_nonzero(r[0][1]) for r in per_sequence.values()) / max(seconds, 1e-9),
        }
        out[name] = {"overall": overall, "seq_wise": seq_wise}
    return out
