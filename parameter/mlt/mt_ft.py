"""MLT-mt+ft baseline: MLT-mt fine-tuning conv5 every 50 frames, 30 Adam steps at lr 1e-3 (section 4.2.1)."""
from parameter.mlt.default import parameters as default_parameters


def parameters():
    params = default_parameters()
    params.name = "mt_ft"
    params.update = "finetune"
    params.update_interval = 50
    params.finetune_iterations = 30
    params.finetune_lr = 1e-3
    return params
