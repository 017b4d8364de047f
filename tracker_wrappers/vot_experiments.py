"""VOT experiments that work for single-target TraX trackers in vot-toolkit 0.9.0.

vot-toolkit 0.9.0 crashes for single-target trackers in two experiment types:

- ``supervised`` (VOT2013-2019 "baseline" with re-initialisation after a failure, and the supervised
  "realtime" experiment): it hands the runtime one ``ObjectStatus`` where a list of objects is
  expected, calls ``update`` without the (empty) list of new objects, and reads ``.region`` from the
  list of statuses the runtime returns. The runtime then raises "Tracker does not support multiple
  objects". It also rejects the real-time runtime wrapper.
- ``multistart`` (VOT2020-2022 "baseline"): it queries the runtime with the anchor's frame number as
  the offset into a sequence that already starts at the anchor, passes an ``ObjectStatus`` where a
  region is expected, and indexes the per-frame times as if they were per object.

``supervised_eao_score`` on sequences shorter than its ``low`` bound (a workspace's own short
sequences) gives EAO=nan with numpy's "Mean of empty slice" warnings; ``EAOScore`` below says which
stack option to change instead.

The subclasses below fix exactly that and keep everything else (result files, names, analyses:
``supervised_*`` and ``multistart_*`` analyses accept them because they are subclasses). Use them in
a stack file by import path, e.g. ``type: tracker_wrappers.vot_experiments.SupervisedExperiment``;
the stacks shipped in ``tracker_wrappers/stacks/`` do that (``mlt vot-setup --stack NAME``).
"""
import logging

import numpy as np
from vot.analysis.supervised import EAOScore as _EAOScore
from vot.dataset.proxy import FrameMapSequence
from vot.experiment.multirun import SupervisedExperiment as _Supervised
from vot.experiment.multistart import MultiStartExperiment as _MultiStart
from vot.experiment.multistart import find_anchors
from vot.region import Special, calculate_overlap
from vot.tracker import ObjectStatus, Trajectory


def _single(statuses):
    """The one object status of a single-target runtime reply."""
    if isinstance(statuses, ObjectStatus):
        return statuses
    if len(statuses) != 1:
        raise ValueError(f"expected the status of one object, got {len(statuses)}")
    return statuses[0]


class SupervisedExperiment(_Supervised):
    """``supervised`` (baseline with restarts) for single-target trackers."""

    def execute(self, tracker, sequence, force=False, callback=None):
        if len(sequence.objects()) != 1:
            raise ValueError("SupervisedExperiment only works on single-target sequences.")
        results = self.results(tracker, sequence)

        with self._get_runtime(tracker, sequence) as runtime:
            if not (hasattr(runtime, "initialize") and hasattr(runtime, "update")):
                raise ValueError("SupervisedExperiment requires an online tracker runtime.")

            for repetition in range(1, self.repetitions + 1):
                name = f"{sequence.name}_{repetition:03d}"
                if Trajectory.exists(results, name) and not force:
                    continue
                if self._can_stop(tracker, sequence):
                    return

                trajectory = Trajectory(len(sequence))
                frame = 0
                while frame < len(sequence):
                    initial = self._get_initialization(sequence, frame)
                    _, elapsed = runtime.initialize(sequence.frame(frame), [ObjectStatus(initial.region, {})])
                    trajectory.set(frame, Special(Trajectory.INITIALIZATION), {"time": elapsed})
                    frame += 1

                    while frame < len(sequence):
                        statuses, elapsed = runtime.update(sequence.frame(frame), [])
                        target = _single(statuses)
                        properties = dict(target.properties)
                        properties["time"] = elapsed
                        overlap = calculate_overlap(target.region, sequence.groundtruth(frame), sequence.size)
                        if overlap <= self.failure_overlap:
                            trajectory.set(frame, Special(self.FAILURE), properties)
                            frame += self.skip_initialize
                            if self.skip_tags:
                                while frame < len(sequence) and any(
                                    t in self.skip_tags for t in sequence.tags(frame)
                                ):
                                    frame += 1
                            break
                        trajectory.set(frame, target.region, properties)
                        frame += 1

                if callback:
                    callback(repetition / self.repetitions)
                trajectory.write(results, name)


class MultiStartExperiment(_MultiStart):
    """``multistart`` (anchored starts, forward and backward) for single-target trackers.

    Needs per-frame anchors in the sequence (``anchor.value``: > 0 forward start, < 0 backward start),
    as the VOT2020+ datasets ship them.
    """

    def execute(self, tracker, sequence, force=False, callback=None):
        results = self.results(tracker, sequence)
        forward, backward = find_anchors(sequence, self.anchor)
        if not forward and not backward:
            raise RuntimeError(
                f"sequence {sequence.name} has no anchors: multistart needs an '{self.anchor}.value' file "
                "(one value per frame: > 0 forward start, < 0 backward start, 0 none)"
            )
        starts = [(f, False) for f in forward] + [(f, True) for f in backward]

        with self._get_runtime(tracker, sequence) as runtime:
            for done, (anchor, reverse) in enumerate(starts, 1):
                name = f"{sequence.name}_{anchor:08d}"
                if Trajectory.exists(results, name) and not force:
                    continue
                order = list(reversed(range(0, anchor + 1))) if reverse else list(range(anchor, len(sequence)))
                proxy = FrameMapSequence(sequence, order)
                initial = self._get_initialization(proxy, 0)
                # Drive the runtime frame by frame (the real-time wrapper has no run()).
                _, elapsed = runtime.initialize(proxy.frame(0), [ObjectStatus(initial.region, {})])
                trajectory = Trajectory(len(proxy))
                trajectory.set(0, Special(Trajectory.INITIALIZATION), {"time": elapsed})
                for frame in range(1, len(proxy)):
                    statuses, elapsed = runtime.update(proxy.frame(frame), [])
                    status = _single(statuses)
                    properties = dict(status.properties)
                    properties["time"] = elapsed
                    trajectory.set(frame, status.region, properties)
                trajectory.write(results, name)
                if callback:
                    callback(done / len(starts))


class EAOScore(_EAOScore):
    """``supervised_eao_score`` that names the option to change when its interval has no frames."""

    def compute(self, experiment, trackers, sequences, dependencies):
        def score(curve, i, j):
            window = np.asarray(curve[0][self.low:self.high + 1], dtype=float)
            if window.size == 0:
                logging.getLogger("vot").warning(
                    "EAO undefined: the stack's supervised_eao_score interval low=%d..high=%d starts after the "
                    "longest sequence (%d frames); set 'low' and 'high' of that analysis in the stack file to "
                    "frame counts your sequences reach", self.low, self.high, len(curve[0]))
                return (float("nan"),)
            return (float(window.mean()),)

        return dependencies[0].foreach(score)
