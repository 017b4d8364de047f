"""The matching network of section 3.2.1: phi (5 convs), channel attention, L2 normalisation, xcorr.

Shape arithmetic (no padding; conv out = (in - k) / s + 1, pool 3x3 stride 2):

    layer                       x: 127x127x3      z: 255x255x3
    conv1 11x11x3x128, s2       59x59x128         123x123x128
    maxpool 3x3, s2             29x29             61x61
    conv2 5x5x128x256           25x25x256         57x57x256
    maxpool 3x3, s2             12x12             28x28
    conv3 3x3x256x384           10x10x384         26x26x384
    conv4 3x3x384x256           8x8x256           24x24x256
    conv5 1x1x256x192 (w5)      8x8x192           24x24x192
    xcorr(phi(x), phi(z))       response (24 - 8 + 1) = 17x17, total stride 2 * 2 * 2 = 8

With the ``lite`` extractor (extractors.py) "conv4" is EfficientNet-Lite0's 112-channel features at stride 8:
16x16 for x, 32x32 for z, the same 17x17 response. Below, 256 is the paper's conv4 channel count.

Batch norm follows every conv; ReLU follows conv1-conv4 (the embedding itself is signed).
The adaptive last layer appends ``w_target`` (1x1x256x32) to w5, its channels normalised like the base
channels (``target_kernels``), and scales the 224 channels by the meta-learner's sigmoid attention (eq. 4). Features are L2-normalised per position across channels,
so the cross-correlation divided by the template area is the mean cosine similarity in [-1, 1];
a learned scale and bias turn it into the logit f that the logistic loss (eq. 6) is defined on.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mlt_plugin.networks.extractors import build_extractor

BASE_CHANNELS = 192  # w5 output channels
TARGET_CHANNELS = 32  # w_target output channels
ADAPTED_CHANNELS = BASE_CHANNELS + TARGET_CHANNELS  # 224


class MatchingNetwork(nn.Module):
    """f_w(x, z) = phi_w(x) * phi_w(z), with an optionally adapted last layer (eq. 1 and eq. 4).

    ``out_channels`` is 192 for MLT (w_target adds 32) and 224 for the MLT-mt baselines; ``extractor``
    names the feature extractor below the last layer (networks/extractors.py: "paper" or "lite").
    """

    def __init__(self, out_channels: int = BASE_CHANNELS, extractor: str = "paper"):
        super().__init__()
        self.out_channels = out_channels
        self.backbone = build_extractor(extractor)  # phi up to conv4: frozen in every variant's update
        self.conv5 = nn.Conv2d(self.backbone.channels, out_channels, 1, bias=False)  # w5
        self.bn5 = nn.BatchNorm2d(out_channels)
        # Logit f = scale * mean cosine similarity + bias.
        self.response_scale = nn.Parameter(torch.tensor(10.0))
        self.response_bias = nn.Parameter(torch.tensor(-5.0))
        # conv1-3 output ranges for the int8 search backbone (networks/int8.py), from the weight file's
        # calibration file where it has one.
        self.int8_activation_max = None

    @property
    def extractor(self) -> str:
        return self.backbone.name

    def conv4_features(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images (B, 3, H, W), 0-255 values, to the extractor's features ("conv4", (B, C, h, w))."""
        return self.backbone(images)

    def target_kernels(self, w_target, template_conv4, floor: float = 0.1):
        """Normalise the 32 target channels like bn5 normalises w5's 192: (w_target, template conv4) ->
        (kernels (B, 32, C), bias (B, 32), C the extractor's channels, 256 for the paper's conv4) such that ``conv4 . kernel + bias`` is a target channel.

        Eq. (4) concatenates w_target to w5, and section 3.2.1 puts a batch norm after every conv, so in
        the paper's network the 32 new channels pass through a normalisation like the base channels do.
        bn5 uses population statistics of w5's outputs; w_target is generated per target, so it has no
        population, and its channels were left unnormalised here: after an update they held 96-100 % of
        the embedding's energy before the L2 normalisation and the matching network's own features
        vanished. Here each target channel is standardised with its mean and standard deviation
        over the exemplar's 8x8 positions (the one image of this target always at hand, at training and
        test time alike), then given the typical magnitude of a base channel after bn5, RMS(gamma, beta).
        The result is an affine kernel, like a batch norm folded into its conv: the same kernel and bias
        apply to the exemplar and to every search region. This departs from the paper's text in what the
        statistics are taken over (the exemplar, not a training population), not in what it normalises.

        ``floor``: a channel that barely varies over the exemplar (a flat exemplar, or a kernel orthogonal
        to everything in it) would be blown up by a tiny standard deviation; its variance is floored at
        floor^2 times what the kernel would give on conv4 features with the population's per-direction
        variance, read off bn5 (running_var of w5's outputs over ||w5 row||^2, averaged).
        """
        w_target = w_target.float()
        template_conv4 = template_conv4.float()
        batch = max(w_target.shape[0], template_conv4.shape[0])
        w_target = w_target.expand(batch, -1, -1)
        template_conv4 = template_conv4.expand(batch, -1, -1, -1)
        positions = template_conv4.flatten(2)  # (B, 256, P)
        mean4 = positions.mean(2, keepdim=True)
        centred = positions - mean4
        response = torch.einsum("bkc,bcp->bkp", w_target, centred)  # target channels over the exemplar, centred
        variance = response.pow(2).mean(2)  # (B, 32)
        w5_norms = self.conv5.weight.float().flatten(1).pow(2).sum(1).clamp(min=1e-12)
        population = (self.bn5.running_var.float() / w5_norms).mean()  # conv4 variance per unit direction
        isotropic = population * w_target.pow(2).sum(2)  # ||w||^2 * s^2
        std = (variance + floor**2 * isotropic).clamp(min=1e-12).sqrt()
        gain = (self.bn5.weight.float().pow(2) + self.bn5.bias.float().pow(2)).mean().sqrt()
        kernels = w_target * (gain / std).unsqueeze(2)
        bias = -torch.einsum("bkc,bc->bk", kernels, mean4.squeeze(2))
        return kernels, bias

    def features(self, conv4, w5=None, w_target=None, attention=None, target_bias=None) -> torch.Tensor:
        """The last layer and channel attention before the L2 normalisation: conv4 (B, 256, h, w) -> (B, C, h, w).

        w5: per-sample last-layer kernels (B, out_channels, 256), used to take per-sample gradients
            (eq. 2); None uses the network's own w5.
        w_target, target_bias: (B or 1, 32, 256) and (B or 1, 32), normalised target-specific kernels from
            ``target_kernels`` (eq. 4); without target_bias w_target is applied as given.
        attention: (B or 1, C) channel attention weights.
        """
        if w5 is None:
            features = self.conv5(conv4)
        else:
            features = torch.einsum("bchw,bkc->bkhw", conv4, w5)
        features = self.bn5(features)
        if w_target is not None:
            w_target = w_target.to(conv4.dtype)
            target = torch.einsum("bchw,bkc->bkhw", conv4, w_target.expand(conv4.shape[0], -1, -1))
            if target_bias is not None:
                target = target + target_bias.to(target.dtype).expand(conv4.shape[0], -1)[:, :, None, None]
            features = torch.cat([features, target.to(features.dtype)], dim=1)
        if attention is not None:
            features = features * attention[:, :, None, None].to(features.dtype)
        return features

    def embed(self, conv4, w5=None, w_target=None, attention=None, target_bias=None) -> torch.Tensor:
        """``features`` L2-normalised per position across channels (section 3.2.1)."""
        return F.normalize(self.features(conv4, w5, w_target, attention, target_bias), dim=1)

    def correlate(self, template: torch.Tensor, search: torch.Tensor) -> torch.Tensor:
        """Cross-correlate embeddings: template (1 or B, C, t, t), search (B, C, s, s) -> logits (B, s - t + 1, ...).

        As a product of spectra: the direct convolution ran at a few GFLOP/s on 2 CPU cores, and the lite
        extractor's 16x16 template over 32x32 search features made it most of a frame's and a training
        step's time. The circular correlation equals the valid one on the first s - t + 1 rows and columns.
        """
        side, kernel = search.shape[-1], template.shape[-1]
        spectrum = torch.fft.rfft2(search.float()) * torch.fft.rfft2(template.float(), s=(side, side)).conj()
        valid = side - kernel + 1
        response = torch.fft.irfft2(spectrum.sum(1), s=(side, side))[:, :valid, :valid] / kernel**2
        return self.response_scale * response + self.response_bias

    @torch.no_grad()
    def matcher(self, template_conv4, w_target=None, attention=None, target_bias=None) -> "TemplateMatcher":
        """``embed`` + ``correlate`` against one template at this network's current weights, for inference."""
        if self.training:
            raise ValueError("matcher() folds bn5's running statistics: call .eval() first")
        return TemplateMatcher(self, template_conv4, w_target, attention, target_bias)

    @torch.no_grad()
    def widened(self, out_channels: int, start_gain: float = 0.1) -> "MatchingNetwork":
        """A copy with more last-layer channels, computing nearly the same embedding and response.

        MLT-mt (224 channels) may start from MLT's trained 192-channel network (its backbone kept). The extra w5
        channels get a fresh kernel, zero bn5 bias and a bn5 gain of ``start_gain`` times the trained
        channels' RMS gain: small, so they hold ~0.2 % of the embedding's energy and the trained features
        carry the response. Not zero: a channel enters the response as the product of its exemplar and
        search values, so at exactly zero its gain would get no gradient (a saddle) and never grow.
        """
        if out_channels < self.out_channels:
            raise ValueError(f"cannot widen a {self.out_channels}-channel matching network to {out_channels} channels")
        wide = MatchingNetwork(out_channels, self.extractor).to(self.response_scale.device)
        old = self.state_dict()
        state = wide.state_dict()
        for key, value in old.items():
            if key.startswith(("conv5.", "bn5.")) and value.dim() > 0:
                state[key][: self.out_channels] = value
            else:
                state[key] = value
        state["bn5.weight"][self.out_channels :] = start_gain * old["bn5.weight"].pow(2).mean().sqrt()
        state["bn5.bias"][self.out_channels :] = 0
        wide.load_state_dict(state)
        return wide

    @torch.no_grad()
    def narrowed(self, out_channels: int) -> "MatchingNetwork":
        """A copy keeping the first ``out_channels`` last-layer channels: MLT's 192-channel network warm-started
        from an MLT-mt network whose extractor was fine-tuned with its 224 channels (`--train-blocks`)."""
        if out_channels > self.out_channels:
            raise ValueError(f"cannot narrow a {self.out_channels}-channel matching network to {out_channels} channels")
        narrow = MatchingNetwork(out_channels, self.extractor).to(self.response_scale.device)
        narrow.load_state_dict({key: value[:out_channels] if key.startswith(("conv5.", "bn5.")) and value.dim() else value
                                for key, value in self.state_dict().items()})
        return narrow

    def fold_batch_norm(self):
        """For inference only: the extractor's batch norms folded (see its fold_batch_norm)."""
        if self.training:
            raise ValueError("fold_batch_norm() is for inference: call .eval() first")
        self.backbone.fold_batch_norm()
        return self

    def forward(self, x: torch.Tensor, z: torch.Tensor, conv4: bool = False) -> torch.Tensor:
        """Eq. (1): logits (B, 17, 17) for exemplars x (B, 3, 127, 127) and search images z (B, 3, 255, 255).
        ``conv4``: x and z are already the extractor's features (a frozen extractor's feature cache); the
        training goes through this forward either way, so that DistributedDataParallel sees every step."""
        if not conv4:
            x, z = self.conv4_features(x), self.conv4_features(z)
        return self.correlate(self.embed(x), self.embed(z))


class TemplateMatcher:
    """Logits of search features against one template, at fixed weights: ``MatchingNetwork.embed`` and
    ``correlate`` for the tracker's every frame, with ``features`` as one affine map (equal to ~1e-6,
    tests/test_networks.py): at inference bn5 (running statistics), the target kernels, their bias and the
    channel attention fold into one (C, in) matrix, applied on channels-last features without the
    einsums and concatenation of ``features``.
    """

    def __init__(self, net, template_conv4, w_target=None, attention=None, target_bias=None):
        self.net = net
        self.template = net.embed(template_conv4, w_target=w_target, attention=attention, target_bias=target_bias)
        bn = net.bn5
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = net.conv5.weight[:, :, 0, 0] * scale[:, None]
        bias = bn.bias - bn.running_mean * scale
        if w_target is not None:
            weight = torch.cat([weight, w_target[0].to(weight.dtype)])
            extra = target_bias[0] if target_bias is not None else torch.zeros(len(w_target[0]), device=bias.device)
            bias = torch.cat([bias, extra.to(bias.dtype)])
        if attention is not None:
            weight, bias = weight * attention[0][:, None], bias * attention[0]
        self.weight_t, self.bias = weight.t().contiguous(), bias

    def __call__(self, conv4: torch.Tensor) -> torch.Tensor:
        """Search features (B, in, s, s), any memory layout -> logits (B, s - t + 1, s - t + 1)."""
        search = F.normalize(conv4.permute(0, 2, 3, 1) @ self.weight_t + self.bias, dim=-1)
        return self.net.correlate(self.template, search.permute(0, 3, 1, 2))
