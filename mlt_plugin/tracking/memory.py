"""The context memory of Algorithm 1 and the minimum-entropy selection of eq. (5)."""
from collections import deque
from dataclasses import dataclass

import torch


@dataclass
class ContextPatch:
    conv4: torch.Tensor  # (256, 24, 24) conv4 features of the context image: an update re-runs only the last layer
    response: torch.Tensor  # (17, 17) response probabilities sigmoid(f) used for tracking
    center: torch.Tensor  # (2,) target position (row, col) in cells from the response centre: the label's centre
    frame: int = -1  # 0-based frame number the patch was cropped from (diagnostics: IoU with the ground truth)
    box: tuple = None  # the tracked box [x, y, w, h] of that frame (diagnostics)


def response_entropy(response: torch.Tensor) -> torch.Tensor:
    """Eq. (5)'s criterion: -sum_p rho(y[p]) log rho(y[p]), rho normalising the map to sum 1."""
    rho = response.flatten(-2).clamp(min=1e-12)
    rho = rho / rho.sum(-1, keepdim=True)
    return -(rho * rho.log()).sum(-1)


class ContextMemory:
    """Confident context patches, the ``capacity`` most recent (older ones are dropped first)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"memory size must be at least 1, got {capacity}")
        self.patches = deque(maxlen=capacity)

    def __len__(self):
        return len(self.patches)

    def add(self, patch: ContextPatch):
        self.patches.append(patch)

    def select_min_entropy(self, count: int) -> list:
        """The ``count`` patches with the lowest response entropy, without replacement."""
        if not self.patches:
            return []
        entropies = response_entropy(torch.stack([p.response for p in self.patches]))
        order = torch.argsort(entropies)[:count]
        return [self.patches[i] for i in order.tolist()]
