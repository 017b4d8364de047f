"""The one way to build a tracker: a parameter set (name or TrackerParams) plus overrides.

``build_tracker("mt", device="cuda", weights="w.safetensors")`` is what the CLI, the benchmark
runners and every toolkit wrapper call. A name may carry overrides after '@', so that variants of one
parameter set can be compared in one run: ``mt@precision=fp32``, ``default@update_interval=10**9``
(MLT with its meta updates switched off). ``build_tracker("mil")`` gives OpenCV's TrackerMIL behind the
same initialize/track interface, a classical reference measured in the same runs.
"""
import ast
import re

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


def parse_variant(spec: str):
    """'name@key=value,key=value' -> (name, {key: value}); values are Python literals or plain strings."""
    name, _, rest = spec.partition("@")
    overrides = {}
    for item in filter(None, re.split(r",(?=\s*[A-Za-z_]\w*=)", rest)):  # commas inside values (tuples) stay
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"parameter variant {spec!r}: write overrides as NAME@key=value,key=value")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return name, overrides


def build_tracker(params="default", **overrides):
    """MLT for a parameter set name (with '@' overrides) or ``TrackerParams``, and parameter overrides
    (None values ignored; they win over '@' overrides)."""
    if params == "mil":
        return OpenCVMIL()
    if not isinstance(params, TrackerParams):
        params, named = parse_variant(params)
        params = load_parameters(params)
        for key, value in named.items():
            if not params.has(key):
                raise ValueError(f"parameter set {params.name!r} has no parameter {key!r}")
            setattr(params, key, value)
    for key, value in overrides.items():
        if value is not None:
            setattr(params, key, value)
    return MLT(params)
