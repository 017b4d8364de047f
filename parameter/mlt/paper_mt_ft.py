"""MLT-mt+ft baseline on the paper's network: MLT-mt fine-tuning conv5 every 50 frames, 30 Adam steps at lr 1e-3 (section 4.2.1)."""
from parameter.mlt.paper import parameters as paper_parameters


def with_finetuning(params):
    """MLT-mt+ft's update on any network's parameters: section 4.2.1's schedule."""
    params.update = "finetune"
    params.update_interval = 50
    params.finetune_iterations = 30
    params.finetune_lr = 1e-3
    return params


def parameters():
    params = with_finetuning(paper_parameters())
    params.name = "paper_mt_ft"
    return params
