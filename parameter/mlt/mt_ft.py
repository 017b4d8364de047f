"""MLT-mt+ft on the default network family: chosen on the select half of the validation split with the
restart protocol (issue 35: the two families' MLT within the paired interval, so the faster one; README,
"Results"). The families: paper, paper_mt, paper_mt_ft (the paper's network) and lite, lite_mt,
lite_mt_ft (EfficientNet-Lite0 features)."""
from parameter.mlt.lite_mt_ft import parameters as family_parameters


def parameters():
    params = family_parameters()
    params.name = "mt_ft"
    return params
