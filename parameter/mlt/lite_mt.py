"""MLT-mt baseline on the lite network: its 224-channel last layer, no online update."""
from parameter.mlt.lite import parameters as lite_parameters


def parameters():
    params = lite_parameters()
    params.name = "lite_mt"
    params.update = "none"
    return params
