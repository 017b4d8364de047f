"""The meta-learner g_theta of section 3.2.2 (eq. 3): delta (Cx192) -> w_target (Cx32) + 224 attentions, C the
feature extractor's channels (256 for the paper's conv4, 112 for lite).

Departures from the paper's text, and why:
- Input: each sample's delta is divided by its own RMS (``normalise_delta``). The paper feeds the raw
  gradient of eq. (2). Its magnitude depends on how well the matching network already fits the target:
  about 0.3 (in units of the training batch's RMS) on the episodes the network was trained on, 1.35-2.5
  on unseen sequences and while tracking, so a fixed input scale put test-time deltas far outside the
  training range and saturated the attention. Per-sample normalisation keeps the direction of delta
  (what the paper says is target-specific) and makes the input unit-RMS at training and test time alike.
- Attention: ``0.5 + sigmoid(a)``, in (0.5, 1.5) and exactly 1 at a = 0, instead of a plain sigmoid in
  (0, 1). The features are L2-normalised right after the attention (section 3.2.1), so only ratios of
  attentions matter; a plain sigmoid can silence the matching network's channels entirely (observed:
  base-channel attention 0.06-0.12), replacing its features instead of adjusting them. The shifted
  sigmoid is still a channel-wise sigmoid attention, bounded so that no channel is scaled by more than
  3x relative to another, and starts at "no change" (eq. 1).
- w_target is generated raw here; its outputs are normalised like the base channels by
  ``MatchingNetwork.target_kernels`` (see there) before it is concatenated to w5 (eq. 4).

The buffers ``delta_scale`` / ``delta_scale_measured`` of the earlier fixed input scale are kept only so
that weight files keep their keys; they are no longer used.
"""
import torch
import torch.nn as nn

from mlt_plugin.networks.matching import ADAPTED_CHANNELS, BASE_CHANNELS, TARGET_CHANNELS


def normalise_delta(delta: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """delta / RMS(delta), per sample: (B, ...) -> (B, ...) with unit RMS per sample (zero stays zero)."""
    rms = delta.float().flatten(1).pow(2).mean(1).sqrt().clamp(min=eps)
    return delta / rms.view(-1, *([1] * (delta.dim() - 1))).to(delta.dtype)


class MetaLearner(nn.Module):
    """3 fully connected layers, 2 hidden layers of 512 units each followed by dropout (keep 0.7)."""

    def __init__(self, feature_channels: int = 256, hidden: int = 512, keep_prob: float = 0.7):
        super().__init__()
        self.feature_channels = feature_channels
        in_features = feature_channels * BASE_CHANNELS  # delta, flattened: 49,152 for the paper's network
        self.out_kernels = feature_channels * TARGET_CHANNELS  # w_target, flattened: 8,192 for the paper's
        self.layers = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(1 - keep_prob),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(1 - keep_prob),
            nn.Linear(hidden, self.out_kernels + ADAPTED_CHANNELS),
        )
        # Unused since per-sample normalisation (see the module docstring); kept for the weight files' keys.
        self.register_buffer("delta_scale", torch.tensor(1.0))
        self.register_buffer("delta_scale_measured", torch.tensor(True))
        # Base-channel attention starts at exactly 1 (a = 0), target-channel attention near its lower bound
        # 0.5 (a = -4): normalised target channels cannot start at zero like an unnormalised near-zero
        # w_target did, so the adapted network starts close to eq. (1) this way (the target channels at a
        # quarter of a base channel's energy) and training raises them where they help. w_target starts
        # small and random; its scale is irrelevant (target_kernels normalises it), its direction is learned.
        nn.init.normal_(self.layers[-1].weight, std=1e-3)
        nn.init.zeros_(self.layers[-1].bias)
        with torch.no_grad():
            self.layers[-1].bias[self.out_kernels + BASE_CHANNELS :] = -4.0

    def forward(self, delta: torch.Tensor):
        """delta (B, 192, C) -> raw w_target (B, 32, C), attention (B, 224) in (0.5, 1.5)."""
        out = self.layers(normalise_delta(delta).flatten(1))
        w_target = out[:, : self.out_kernels].view(-1, TARGET_CHANNELS, self.feature_channels)
        attention = 0.5 + torch.sigmoid(out[:, self.out_kernels :])
        return w_target, attention
