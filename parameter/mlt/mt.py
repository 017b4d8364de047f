"""MLT-mt baseline: the matching network with a 224-channel last layer and no online update."""
from parameter.mlt.default import parameters as default_parameters


def parameters():
    params = default_parameters()
    params.name = "mt"
    params.update = "none"
    return params
