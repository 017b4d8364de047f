"""MLT on the lite network: the paper's matching head, meta-learner and Algorithm 1 on EfficientNet-Lite0
features learned on ImageNet (mlt_plugin/networks/extractors.py)."""
from parameter.mlt.paper import parameters as paper_parameters


def parameters():
    params = paper_parameters()
    params.name = "lite"
    params.extractor = "lite"
    # Chosen on the select half with lite_mt (3 starts): 0.15 +0.017 [+0.001, +0.036] over the paper
    # network's 0.25; 0.10 and 0.05 scored lower (docs/experiments.md, "precision and the cosine window").
    params.window_influence = 0.15
    return params
