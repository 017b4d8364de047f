"""MLT on the default network family: the one more accurate on the report half of the validation split
(README, "Results"). The families: paper, paper_mt, paper_mt_ft (the paper's network) and lite, lite_mt,
lite_mt_ft (EfficientNet-Lite0 features)."""
from parameter.mlt.paper import parameters as family_parameters


def parameters():
    params = family_parameters()
    params.name = "default"
    return params
