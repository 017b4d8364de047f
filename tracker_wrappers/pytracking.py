"""MLT under pytracking's tracker contract (what ``mlt pytracking-install`` points a checkout to).

pytracking finds a tracker by name: ``pytracking/tracker/mlt/__init__.py: get_tracker_class()`` and
``pytracking/parameter/mlt/<param>.py: parameters()``. Its runner (``Tracker.run_sequence``) then

- sets ``params.visualization`` and ``params.debug`` and reads ``params.get('object_presence_score_threshold', ...)``
  and, for VOT, ``params.vot_anno_conversion_type``; ``run_video`` / ``run_webcam`` read ``params.tracker_name``
  (set by the runner) and look at ``params.multiobj_mode`` or the class's ``multiobj_mode``;
- builds ``tracker_class(params)`` and sets ``tracker.visdom``; calls ``initialize_features()`` (video,
  webcam, VOT), ``predicts_segmentation_mask()`` (VOT2020), ``initialize(image, info)`` with
  ``info['init_bbox'] = [x, y, w, h]`` and ``track(image, info)``, images RGB uint8 HxWx3;
- stores ``target_bbox``, ``time`` and ``object_presence_score`` from the returned dicts.

``pytracking_parameters(name)`` gives our ``TrackerParams`` with those runner fields defaulted, and
``PytrackingMLT`` is ``mlt_plugin.MLT`` plus the few BaseTracker members the runner touches.
"""
from mlt_plugin import MLT, load_parameters


def pytracking_parameters(name: str = "default"):
    """The MLT parameter set ``name`` with the fields pytracking's runner reads."""
    params = load_parameters(name)
    params.set_default_values({
        "debug": 0,
        "visualization": False,
        "visdom_info": {},
        "multiobj_mode": "parallel",  # one MLT per target when a sequence has several
        "object_presence_score_threshold": params.confidence_threshold,  # tau: target more likely than not
        "vot_anno_conversion_type": "preserve_area",  # pytracking's VOT polygon -> box conversion
    })
    return params


class PytrackingMLT(MLT):
    """MLT with pytracking's BaseTracker members: ``visdom``, ``predicts_segmentation_mask``, ``visdom_draw_tracking``."""

    multiobj_mode = "parallel"

    def __init__(self, params):
        super().__init__(params)
        self.visdom = None

    def predicts_segmentation_mask(self) -> bool:
        return False

    def visdom_draw_tracking(self, image, box, segmentation=None):
        if self.visdom is None:
            return
        boxes = list(box.values()) if isinstance(box, dict) else [box]
        self.visdom.register((image, *boxes), "Tracking", 1, "Tracking")
