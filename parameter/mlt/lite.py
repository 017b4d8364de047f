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
    # "head": one search crop per frame, the box from the box head at MLT's response peak (box_estimators.py:
    # HeadBox); "scale_search": the paper's 3-scale search with the window_influence above.
    params.box_estimator = "head"
    params.box_head_weights = None  # None: the shipped mlt_plugin/weights/lite_box.safetensors
    params.head_window_influence = 0.4  # cosine window weight on the penalised score (peak 1)
    params.head_penalty = 0.15  # SiamRPN's penalty_k on scale and aspect change
    params.head_learning_rate = 0.4  # size update rate, times the penalty and the score at the chosen cell
    params.head_score_weight = 0.0  # the head's own foreground probability mixed into MLT's response
    return params
