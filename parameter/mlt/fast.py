"""CPU real-time preset: MLT on the default family (lite) with one search scale per frame.

One scale costs a third of the paper's three; the price is that the size is no longer re-estimated
(measured with `mlt eval --params default fast`)."""
from parameter.mlt.lite import parameters as family_parameters


def parameters():
    params = family_parameters()
    params.name = "fast"
    params.scales = (1.0,)
    return params
