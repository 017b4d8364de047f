"""The default family's one-scale search without the box head: one crop per frame and the first frame's
box shape, the size never re-estimated (kept to compare with the box head, which also runs one crop)."""
from parameter.mlt.lite import parameters as family_parameters


def parameters():
    params = family_parameters()
    params.name = "fast"
    params.box_estimator = "scale_search"
    params.scales = (1.0,)
    return params
