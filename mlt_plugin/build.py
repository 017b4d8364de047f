"""The one way to build a tracker: a parameter set (name or TrackerParams) plus overrides.

``build_tracker("mt", device="cuda", weights="w.safetensors")`` is what the CLI, the benchmark
runners and every toolkit wrapper call. ``build_tracker("mil")`` gives OpenCV's TrackerMIL behind the
same initialize/track interface, a classical reference measured in the same runs.
"""
import cv2

from mlt_plugin.params import TrackerParams, load_parameters
from mlt_plugin.tracking.tracker import MLT


class OpenCVMIL:
    """OpenCV's TrackerMIL behind the MLT initialize/track interface."""

    def __init__(self):
        self.tracker = cv2.TrackerMIL.create()

    def initialize(self, image, box):
        self.box = [float(v) for v in box]
        self.tracker.init(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), tuple(int(round(v)) for v in box))

    def track(self, image, info=None):
        ok, box = self.tracker.update(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if ok:
            self.box = [float(v) for v in box]
        return {"target_bbox": list(self.box), "object_presence_score": float(ok)}


def build_tracker(params="default", **overrides):
    """MLT for a parameter set name or ``TrackerParams``, with parameter overrides (None values ignored)."""
    if params == "mil":
        return OpenCVMIL()
    if not isinstance(params, TrackerParams):
        params = load_parameters(params)
    for key, value in overrides.items():
        if value is not None:
            setattr(params, key, value)
    return MLT(params)
