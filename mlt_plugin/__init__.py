"""MLT: Siamese matching network + meta-learner visual tracker (Choi, Kwon, Lee)."""
from mlt_plugin.build import build_tracker
from mlt_plugin.params import TrackerParams, load_parameters
from mlt_plugin.tracking.tracker import MLT

__all__ = ["MLT", "TrackerParams", "build_tracker", "load_parameters"]
