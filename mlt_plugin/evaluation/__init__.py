"""The one evaluation core under `mlt eval`, `mlt diagnose`, `mlt bench`, the got10k runner and the LaSOT
experiment, in the order a run goes through it:

- ``starts``: which runs a sequence gets: the exact first box, OTB's spatial (SRE) and temporal (TRE) starts;
- ``running``: the one frame loop (``run_sequence``: one-pass or restart, a per-frame hook) and the runner
  over (tracker, sequence, start) items (``run``: progress, resume, worker processes, shards);
- ``results``: the per-item result files (boxes in the layout's coordinates, times, VOT trajectories);
- ``scoring``: one scorer for every caller (``score``; ``performance`` and ``restart_performance`` over runs),
  in got10k's vocabulary: ``success_score``, ``precision_score``, ``normalized_precision_score``,
  ``success_rate``, ``speed_fps``;
- ``statistics``: paired bootstrap intervals between trackers over sequences;
- ``report``: tables, ``performance.json`` and the success / precision plots.

The rule for frames without a valid box (NaN, w or h <= 0, or marked absent/occluded by the layout): they
count as failures at every threshold and stay in the denominator, as in the official LaSOT toolkit; the
first frame's prediction is the ground truth (``mlt_plugin.metrics``). Success score = mean of the success
curve over 21 IoU thresholds 0:0.05:1 (the OTB/LaSOT "AUC", got10k's ``success_score`` with
``nbins_iou=21``); precision score = share of frames with centre error <= 20 px; normalised precision =
LaSOT's, mean over 0:0.01:0.5. fps = frames / seconds of tracker calls (decoding excluded).
"""
