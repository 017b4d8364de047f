"""Thin adapters between MLT and the benchmark toolkits.

- ``tracker_wrappers.vot_trax``: TraX server for the VOT toolkit (``trackers.ini`` at the repo top level).
- ``tracker_wrappers.vot_experiments`` + ``tracker_wrappers/stacks/*.yaml``: VOT experiments that work
  for single-target trackers in vot-toolkit 0.9.0 (supervised baseline with restarts, multistart).
- ``tracker_wrappers.got10k``: a ``got10k.trackers.Tracker`` and an offline runner for the got10k experiments.
- ``tracker_wrappers.lasot``: ``ExperimentLaSOT`` (protocols I and II) with the got10k experiment shape.
- ``tracker_wrappers.pytracking``: the class behind ``mlt pytracking-install``.

This package imports nothing heavy at import time: the TraX server must answer the handshake fast.
"""
