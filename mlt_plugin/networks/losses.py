"""Labels, the balanced logistic loss (eq. 6) and the meta-learner's input delta (eq. 2)."""
import torch
import torch.nn.functional as F

from mlt_plugin.geometry import RESPONSE_SIZE


def label_map(centers: torch.Tensor, radius: float, size: int = RESPONSE_SIZE) -> torch.Tensor:
    """Binary labels in {-1, +1} (B, size, size): +1 within ``radius`` cells of each target centre.

    centers: (B, 2) target positions (row, col) as offsets in cells from the map centre.
    """
    coords = torch.arange(size, dtype=torch.float32, device=centers.device) - (size - 1) / 2
    dy = coords.view(1, -1, 1) - centers[:, 0].view(-1, 1, 1)
    dx = coords.view(1, 1, -1) - centers[:, 1].view(-1, 1, 1)
    return torch.where(dy**2 + dx**2 <= radius**2, 1.0, -1.0)


def balance_weights(labels: torch.Tensor) -> torch.Tensor:
    """zeta(y) of eq. (6): each class gets half of the total weight, so that mean(zeta) = 1 per map."""
    positive = labels > 0
    num = labels[0].numel()
    num_pos = positive.flatten(1).sum(1).clamp(min=1).view(-1, 1, 1)
    num_neg = (~positive).flatten(1).sum(1).clamp(min=1).view(-1, 1, 1)
    return torch.where(positive, num / (2 * num_pos), num / (2 * num_neg))


def logistic_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Eq. (6): (1/|P|) sum_p zeta(y[p]) log(1 + exp(-f[p] y[p])), per map; averaged unless reduction='none'."""
    per_position = balance_weights(labels) * F.softplus(-logits.float() * labels)
    per_map = per_position.flatten(1).mean(1)
    return per_map if reduction == "none" else per_map.mean()


def soft_logistic_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. (6)'s logistic loss toward soft labels in [0, 1] (a teacher's foreground probability, distillation):
    the cross-entropy of sigmoid(f) with the target, p log(1 + exp(-f)) + (1 - p) log(1 + exp(f)), averaged
    over positions and maps. Unbalanced: the teacher's low scores on distractors are what it teaches."""
    f = logits.float()
    return (targets * F.softplus(-f) + (1 - targets) * F.softplus(f)).mean()


def meta_gradient(net, template_conv4, search_conv4, labels) -> torch.Tensor:
    """Eq. (2): delta = -(1/M) sum_i d loss(f_w(x, z_i), y_i) / d w5, one delta per template.

    template_conv4: (B, 256, 8, 8) conv4 features of B targets x.
    search_conv4: (B * M, 256, 24, 24) conv4 features of M context patches per target, grouped by target.
    labels: (B * M, 17, 17) binary labels.
    Returns delta (B, out_channels, 256), computed on the unadapted network (192 channels, no attention),
    as during meta-learner training. Each target gets its own copy of w5 so its gradient stays its own.
    """
    batch = template_conv4.shape[0]
    per_target = search_conv4.shape[0] // batch
    with torch.enable_grad():
        w5 = net.conv5.weight.detach().flatten(1).float()  # (C, 256)
        w5 = w5.unsqueeze(0).repeat(batch, 1, 1).requires_grad_(True)
        template = net.embed(template_conv4.float(), w5=w5)
        search = net.embed(search_conv4.float(), w5=w5.repeat_interleave(per_target, 0))
        # One correlation per target (a shared template): much faster backward than a grouped conv.
        logits = torch.cat(
            [net.correlate(template[b : b + 1], search[b * per_target : (b + 1) * per_target]) for b in range(batch)]
        )
        losses = logistic_loss(logits, labels, reduction="none").view(batch, per_target).mean(1)
        (grad,) = torch.autograd.grad(losses.sum(), w5)
    return -grad
