"""What the meta-learner does while tracking: a per-frame hook on the one run loop (``UpdateReport``), behind
`mlt diagnose`, which scores the same runs with the one scorer.

Per start: the centre and size errors (a lost position or a wrong scale), the frames stored in the memory and
their share with IoU < 0.3 with the ground truth, and what each gate measure (probability, relative, psr; see
parameter/mlt/paper.py) at tau would have stored on the same trajectory. Per meta update: the RMS of delta
(eq. 2), the attention on the base and the target channels (min/mean/max, and the share within 0.02 of its
bounds 0.5 and 1.5), the target channels' share of the exemplar's energy before L2 normalisation, and the
low-IoU share of the memory and of the M patches chosen for the update.
"""
import numpy as np
import torch

from mlt_plugin import metrics

LOW_IOU = 0.3
GATES = ("probability", "relative", "psr")


def _low(boxes, truth):
    """Per box: IoU with the ground truth below LOW_IOU (a frame without a visible target counts as low)."""
    return np.nan_to_num(metrics.iou(np.asarray(boxes, dtype=float).reshape(-1, 4), truth), nan=0.0) < LOW_IOU


class UpdateReport:
    """The hook of one run of ``tracker`` (an MLT) on a sequence with ground truth ``truth``."""

    def __init__(self, tracker, truth, show=False):
        self.tracker, self.truth, self.show = tracker, truth, show
        self.frames, self.updates = [], []  # per tracked frame: (stored, *gate measures); per update: its numbers

    def __call__(self, index, image, box):
        t = self.tracker
        if t.frame_index == 1:  # the initialisation: the memory's frame numbers count from here
            self.first, self.last_patch, self.last_update = index, None, None
            return
        patch = t.memory.patches[-1] if t.memory.patches else None
        stored = patch is not None and patch is not self.last_patch
        self.frames.append((stored, *(getattr(t, f"last_{gate}") for gate in GATES)))
        self.last_patch = patch
        if t.last_update is not None and t.last_update is not self.last_update:
            self.last_update = t.last_update
            self.updates.append({"frame": index, **self.update(t, t.last_update)})
            if self.show:
                print("    update " + ", ".join(f"{k} {v}" for k, v in self.updates[-1].items()), flush=True)

    def update(self, t, record) -> dict:
        base = t.net.conv5.out_channels  # the target channels follow the base ones
        attention = t.attention[0].float()
        report = {"delta_rms": round(float(record["delta"].float().pow(2).mean().sqrt()), 6)}
        for part, values in (("base", attention[:base]), ("target", attention[base:])):
            report[f"attention_{part}"] = [round(float(f(values)), 3) for f in (torch.min, torch.mean, torch.max)]
        report["saturated"] = round(float(((attention < 0.52) | (attention > 1.48)).float().mean()), 3)
        with torch.inference_mode():
            energy = t.net.features(t.template_conv4, w_target=t.w_target, attention=t.attention,
                                    target_bias=t.target_bias).float().pow(2).sum((0, 2, 3))
        report["target_share"] = round(float(energy[base:].sum() / energy.sum()), 3)
        for name, patches in (("memory", list(t.memory.patches)), ("chosen", record["patches"])):
            truth = self.truth[[self.first + q.frame for q in patches]]
            report[f"{name}_low"] = round(float(np.mean(_low([q.box for q in patches], truth))), 3) if patches else 0.0
        return report

    def summary(self, boxes) -> dict:
        """The start's numbers from its boxes (N, 4), as the runner returns them."""
        frames = np.arange(self.first + 1, self.first + 1 + len(self.frames))
        (stored, *gates), low = map(np.asarray, zip(*self.frames)), _low(boxes[frames], self.truth[frames])
        seen = metrics.valid_ground_truth(self.truth[frames])
        errors = metrics.location_and_size_errors(boxes[frames][seen], self.truth[frames][seen])
        result = {"centre_error": errors[0], "size_error": errors[1], "stored": int(stored.sum()),
                  "stored_low": float(low[stored].mean()) if stored.any() else 0.0}
        for gate, values in zip(GATES, gates):
            passed = values > self.tracker.params.confidence_threshold
            result[f"gate_{gate}"] = [int(passed.sum()), float(low[passed].mean()) if passed.any() else 0.0]
        return result
