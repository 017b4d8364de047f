"""The one way to build a tracker: a parameter set (name or TrackerParams) plus overrides.

``build_tracker("mt", device="cuda", weights="w.safetensors")`` is what the CLI, the benchmark
runners and every toolkit wrapper call. A name may carry overrides after '@', so that variants of one
parameter set can be compared in one run: ``mt@precision=fp32``, ``default@update_interval=10**9``
(MLT with its meta updates switched off).

OpenCV's trackers run behind the same initialize/track interface, measured in the same runs as MLT:
``build_tracker("mil")`` (TrackerMIL, a classical reference) and the peers (``PEERS``): "nanotrack"
(TrackerNano, NanoTrack v2), "vittrack" (TrackerVit, VitTrack), "csrt" (TrackerCSRT, only with
opencv-contrib-python). NanoTrack and VitTrack read their ONNX files from a models folder:
``build_tracker("nanotrack", models="DIR")``, else ``$MLT_MODELS``, else ``../shared/models`` beside
the checkout (never shipped in the package).
"""
import ast
import os
import re
import sys
from functools import partial
from pathlib import Path

import cv2

from mlt_plugin.params import TrackerParams, load_parameters
from mlt_plugin.tracking.tracker import MLT
from mlt_plugin.training.split import CHECKOUT_PARENT

MODELS = Path(os.environ.get("MLT_MODELS") or CHECKOUT_PARENT / "shared" / "models")
MODELS_HELP = "folder of the peers' model files (default: $MLT_MODELS, else ../shared/models)"

# The trackers a user picks today for fast CPU tracking, run beside MLT by `mlt eval --peers` and `mlt bench`:
# build_tracker name -> label in tables and result folders.
PEERS = {"nanotrack": "NanoTrack", "vittrack": "VitTrack", "csrt": "CSRT"}


class OpenCVTracker:
    """An OpenCV tracker (``create()`` gives it) behind the MLT initialize/track interface."""

    def __init__(self, create):
        self.create, self.tracker, self.used = create, create(), False  # a model that cannot load fails here

    def initialize(self, image, box):
        self.box = [float(v) for v in box]
        # A fresh OpenCV tracker for every later initialisation: TrackerMIL's second init() on one object
        # fails with std::bad_alloc (seen in the restart protocol, which re-initialises after each failure).
        if self.used:
            self.tracker = self.create()
        self.used = True
        # OpenCV's trackers take integer boxes inside the image (TrackerMIL fails with std::bad_alloc on a box
        # that crosses the border, as ground truth near the edge does): the part of the box in the image.
        height, width = image.shape[:2]
        x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
        x1, y1 = min(width, int(round(box[0] + box[2]))), min(height, int(round(box[1] + box[3])))
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"initial box {list(box)} has no whole pixel inside the {width}x{height} image")
        self.tracker.init(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (x0, y0, x1 - x0, y1 - y0))

    def track(self, image, info=None):
        ok, box = self.tracker.update(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if ok:  # on a failed update OpenCV's box is stale or empty: keep the last one
            self.box = [float(v) for v in box]
        # TrackerNano and TrackerVit score their box; OpenCV's other trackers give -1 (or have no such method,
        # before OpenCV 5): then the presence is whether the update succeeded.
        score = getattr(self.tracker, "getTrackingScore", lambda: -1)()
        return {"target_bbox": list(self.box), "object_presence_score": float(score if score >= 0 else ok)}


def _model_file(models, relative, label):
    path = Path(models or MODELS) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing ({label}'s model file): give the models folder with --models DIR")
    return str(path)


def _nanotrack(models):
    params = cv2.TrackerNano_Params()
    params.backbone = _model_file(models, "nanotrack_v2/nanotrack_backbone_sim.onnx", "NanoTrack")
    params.neckhead = _model_file(models, "nanotrack_v2/nanotrack_head_sim.onnx", "NanoTrack")
    return cv2.TrackerNano_create(params)


def _vittrack(models):
    params = cv2.TrackerVit_Params()
    params.net = _model_file(models, "vittrack/vitTracker.onnx", "VitTrack")
    return cv2.TrackerVit_create(params)


def _csrt(models):
    if not hasattr(cv2, "TrackerCSRT"):
        raise ValueError("CSRT needs opencv-contrib-python in place of opencv-python (this cv2 has no TrackerCSRT)")
    return cv2.TrackerCSRT.create()


OPENCV_TRACKERS = {"mil": lambda models: cv2.TrackerMIL.create(), "nanotrack": _nanotrack,
                   "vittrack": _vittrack, "csrt": _csrt}


def available_peers(models=None) -> dict:
    """The ``PEERS`` that build here (name -> label), built once to check; one line on stderr for each that
    does not (missing model file, no opencv-contrib), so that a run goes on without it."""
    found = {}
    for name, label in PEERS.items():
        try:
            build_tracker(name, models=models)
        except (FileNotFoundError, ValueError) as err:
            print(f"{label} skipped: {err}", file=sys.stderr, flush=True)
        else:
            found[name] = label
    return found


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
    (None values ignored; they win over '@' overrides). OpenCV's trackers (``OPENCV_TRACKERS``) take
    only ``models``."""
    if isinstance(params, str) and params in OPENCV_TRACKERS:
        return OpenCVTracker(partial(OPENCV_TRACKERS[params], overrides.get("models")))
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
