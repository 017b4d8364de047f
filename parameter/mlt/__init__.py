"""MLT's parameter sets: one module per set (``parameters()`` -> TrackerParams), and the aliases below.

The families: paper, paper_mt, paper_mt_ft (the paper's 5-conv network) and lite, lite_mt, lite_mt_ft
(EfficientNet-Lite0 features); fast is the default family at one search scale.
"""

# Alias -> the set it loads (with ``name`` set to the alias). The default family is lite: on the select half
# with restarts the two families' MLT were within the paired interval, so the faster one
# (docs/experiments.md, "Select half, restart protocol: the six parameter sets and the peers").
ALIASES = {"default": "lite", "mt": "lite_mt", "mt_ft": "lite_mt_ft"}
