"""The meta-learner g_theta of section 3.2.2 (eq. 3): delta (256x192) -> w_target (256x32) + 224 attentions."""
import torch
import torch.nn as nn

from mlt_plugin.networks.matching import ADAPTED_CHANNELS, BASE_CHANNELS, CONV4_CHANNELS, TARGET_CHANNELS


class MetaLearner(nn.Module):
    """3 fully connected layers, 2 hidden layers of 512 units each followed by dropout (keep 0.7)."""

    def __init__(self, hidden: int = 512, keep_prob: float = 0.7):
        super().__init__()
        in_features = CONV4_CHANNELS * BASE_CHANNELS  # delta, flattened: 49,152
        self.out_kernels = CONV4_CHANNELS * TARGET_CHANNELS  # w_target, flattened: 8,192
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(1 - keep_prob),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(1 - keep_prob),
            nn.Linear(hidden, self.out_kernels + ADAPTED_CHANNELS),
        )
        # Gradients are tiny (~1e-4); a fixed scale, measured on the first training batch and saved
        # with the weights, brings delta to unit RMS so the first layer sees O(1) inputs.
        self.register_buffer("delta_scale", torch.tensor(1.0))
        self.register_buffer("delta_scale_measured", torch.tensor(False))
        # Start from a near-zero w_target and uniform attention: the adapted network starts at eq. (1).
        nn.init.normal_(self.layers[-1].weight, std=1e-3)
        nn.init.zeros_(self.layers[-1].bias)

    @property
    def delta_scale_set(self) -> bool:
        return bool(self.delta_scale_measured)

    @torch.no_grad()
    def set_delta_scale(self, delta: torch.Tensor):
        """Fix the input scale to 1 / RMS(delta) of a training batch."""
        self.delta_scale.fill_(1.0 / float(delta.float().pow(2).mean().sqrt().clamp(min=1e-12)))
        self.delta_scale_measured.fill_(True)

    def forward(self, delta: torch.Tensor):
        """delta (B, 192, 256) -> w_target (B, 32, 256), attention (B, 224) in (0, 1)."""
        out = self.layers((delta * self.delta_scale).flatten(1))
        w_target = out[:, : self.out_kernels].view(-1, TARGET_CHANNELS, CONV4_CHANNELS)
        attention = torch.sigmoid(out[:, self.out_kernels :])
        return w_target, attention
