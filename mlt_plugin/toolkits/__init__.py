"""Set-up helpers for the benchmark toolkits: ``mlt vot-setup`` and ``mlt pytracking-install``.

The adapters themselves live in the top-level ``tracker_wrappers`` package.
"""
