"""MLT on the lite network (issue 30): the paper's matching head, meta-learner and Algorithm 1 on
EfficientNet-Lite0 features learned on ImageNet (mlt_plugin/networks/extractors.py)."""
from parameter.mlt.paper import parameters as paper_parameters


def parameters():
    params = paper_parameters()
    params.name = "lite"
    params.extractor = "lite"
    params.precision = "auto"  # search features: "auto" (OpenVINO bf16 on CPUs with native bf16, else fp32; fp16 on CUDA), "fp32", "bf16", "fp16"
    return params
