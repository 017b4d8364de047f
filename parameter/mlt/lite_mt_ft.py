"""MLT-mt+ft baseline on the lite network: lite MLT-mt fine-tuning its last layer every 50 frames, 30 Adam
steps at lr 1e-3 (section 4.2.1)."""
from parameter.mlt.lite import parameters as lite_parameters
from parameter.mlt.paper_mt_ft import with_finetuning


def parameters():
    params = with_finetuning(lite_parameters())
    params.name = "lite_mt_ft"
    return params
