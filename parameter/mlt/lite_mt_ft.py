"""MLT-mt+ft baseline on the lite network: lite MLT-mt fine-tuning its last layer every 50 frames, 30 Adam
steps at lr 1e-3 (section 4.2.1)."""
from parameter.mlt.lite import parameters as lite_parameters


def parameters():
    params = lite_parameters()
    params.name = "lite_mt_ft"
    params.update = "finetune"
    params.update_interval = 50
    params.finetune_iterations = 30
    params.finetune_lr = 1e-3
    return params
