"""MLT on the paper's network (section 4.1): its 5-conv matching network + meta-learner updates every T frames
(T = 10, not 30)."""
import torch

from mlt_plugin import geometry
from mlt_plugin.params import TrackerParams, default_device


def parameters() -> TrackerParams:
    params = TrackerParams()
    params.name = "paper"
    params.extractor = "paper"  # feature extractor, a key of mlt_plugin/networks/extractors.py: EXTRACTORS
    params.device = default_device()
    params.dtype = torch.float32  # network run dtype; weights are fp16 on disk
    params.precision = "auto"  # search conv1-4: "auto" (int8 on x86 CPUs via OpenVINO, fp16 on CUDA), "fp32", "int8", "bf16", "fp16"
    params.weights = None  # None: the weights shipped in mlt_plugin/weights/
    params.num_threads = None  # torch CPU threads; None leaves torch's default

    # Geometry (SiamFC conventions, section 3.2.1).
    params.exemplar_size = geometry.EXEMPLAR_SIZE  # x
    params.instance_size = geometry.INSTANCE_SIZE  # z
    params.context_amount = geometry.CONTEXT_AMOUNT  # padding around the box: (w + h) / 2
    params.total_stride = geometry.TOTAL_STRIDE
    params.response_upsample = 16  # 17x17 -> 272x272 before the arg-max

    # Search (section 4.1): the box estimator (mlt_plugin/tracking/box_estimators.py) "scale_search" crops the
    # search region at every scale and keeps the first frame's aspect ratio; "head" (lite family) regresses the box.
    params.box_estimator = "scale_search"
    params.scales = (1 / 1.035, 1.0, 1.035)
    params.scale_penalty = 0.97
    params.scale_damping = 0.59  # weight of the new scale in the size update
    params.window_influence = 0.25  # cosine window weight
    params.min_size = 2.0  # smallest tracked width/height in pixels

    # Online adaptation (Algorithm 1).
    params.update = "meta"  # "meta" (MLT), "none" (MLT-mt), "finetune" (MLT-mt+ft)
    # The confidence gate, Algorithm 1's "if y[s_t] > tau": which measure of the new state's response is
    # compared with tau before a context patch enters the memory.
    # "relative": the peak's logit height above the map's mean, over that height on the first frame (where the
    #   target is known to be): 0.5 is a match at least half as strong as the target's own;
    # "probability": sigmoid(f) at the peak, the paper's wording; on our networks it stays high while lost;
    # "psr": the peak-to-sidelobe ratio, over the first frame's.
    params.confidence = "relative"
    params.confidence_threshold = 0.5  # tau, applied to the measure params.confidence names
    params.memory_size = 64  # K: most recent confident context patches kept
    # T: the paper's 30 updated too rarely here; 10 was chosen on the select half (+0.013 [-0.001, +0.030]
    # AUC over 30; docs/experiments.md, "why the meta updates hurt, and the update period")
    params.update_interval = 10
    params.num_update_samples = 8  # M, chosen by minimum entropy (eq. 5)
    params.label_radius = geometry.LABEL_RADIUS  # positive radius on the response label map, in cells
    return params
