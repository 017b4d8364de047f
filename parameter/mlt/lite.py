"""MLT on the lite network (issue 30): the paper's matching head, meta-learner and Algorithm 1 on
EfficientNet-Lite0 features learned on ImageNet (mlt_plugin/networks/extractors.py)."""
from parameter.mlt.paper import parameters as paper_parameters


def parameters():
    params = paper_parameters()
    params.name = "lite"
    params.extractor = "lite"
    params.precision = "auto"  # search features: "auto" (int8 on x86 CPUs via OpenVINO, fp16 on CUDA), "fp32", "int8", "bf16", "fp16"
    # Chosen on the select half with lite_mt (3 starts): 0.15 +0.017 [+0.001, +0.036] over the paper
    # network's 0.25; 0.10 and 0.05 scored lower than 0.15 (docs/experiments.md, issue 30).
    params.window_influence = 0.15
    return params
