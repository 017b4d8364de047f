"""MLT-mt baseline on the paper's network: the matching network with a 224-channel last layer and no online update."""
from parameter.mlt.paper import parameters as paper_parameters


def parameters():
    params = paper_parameters()
    params.name = "paper_mt"
    params.update = "none"
    return params
