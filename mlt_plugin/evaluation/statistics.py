"""Paired bootstrap intervals: is one tracker better than another on these sequences?"""
import numpy as np


def paired_difference(perf: dict, name: str, baseline: str, key: str = "success_score", resamples: int = 10000,
                      seed: int = 0) -> dict:
    """``key`` (default: success AUC) of ``name`` minus ``baseline`` with a 95 % paired bootstrap interval over
    sequences.

    Sequences differ far more than two trackers do on one sequence, so the interval resamples the
    per-sequence differences (each a mean over starts): it says whether this set of sequences can tell
    the two apart, which the overall numbers alone cannot.
    """
    sequences = list(perf[baseline]["seq_wise"])
    diffs = np.array([perf[name]["seq_wise"][s][key] - perf[baseline]["seq_wise"][s][key] for s in sequences])
    picks = np.random.default_rng(seed).integers(0, len(diffs), (resamples, len(diffs)))
    low, high = np.percentile(diffs[picks].mean(1), [2.5, 97.5])
    return {"baseline": baseline, key: float(diffs.mean()), "ci95": [float(low), float(high)], "sequences": len(diffs)}


# What the paired intervals compare, per protocol: (key, label)
COMPARED = {
    "one-pass": (("success_score", "success AUC"),),
    "restart": (("mean_overlap", "mean overlap"), ("accuracy", "accuracy"),
                ("failures_per_100", "failures per 100 frames")),
}


def differences(perf: dict, protocol: str = "one-pass") -> str:
    """Paired differences (``paired_difference``) of every pair of trackers on the protocol's first number
    (success AUC, or the restart mean overlap), and of every tracker against the first on its other numbers.
    Each is also stored in ``perf[name]["overall"]["paired_difference"][key][baseline]`` for the report."""
    names = list(perf)
    lines = []
    for rank, (key, label) in enumerate(COMPARED[protocol]):
        lines.append(f"{label}, 95 % paired bootstrap intervals over sequences:")
        pairs = [(a, b) for i, b in enumerate(names) for a in names[i + 1:]] if rank == 0 else \
            [(a, names[0]) for a in names[1:]]
        for name, baseline in pairs:
            d = paired_difference(perf, name, baseline, key)
            perf[name]["overall"].setdefault("paired_difference", {}).setdefault(key, {})[baseline] = d
            lines.append(f"  {name} minus {baseline}: {d[key]:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
    return "\n".join(lines)
