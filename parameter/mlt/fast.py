"""CPU real-time preset: MLT with one search scale per frame.

One scale costs a third of the paper's three; the price is that the size is no longer re-estimated
(measured with `mlt eval --params default fast`, see the README)."""
from parameter.mlt.default import parameters as default_parameters


def parameters():
    params = default_parameters()
    params.name = "fast"
    params.scales = (1.0,)
    return params
