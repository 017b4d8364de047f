"""conv1-4 in int8 for the per-frame search forward on CPUs (PyTorch's x86 quantized engine, VNNI).

Weights: int8, one scale per output channel, from the trained network (after batch norm folding).
Activations: uint8. The input needs no calibration: the pixel normalisation is folded into conv1
(exact, as the convolutions have no padding), so the input is the crop's own 0-255 pixel values,
which uint8 holds exactly. Each conv's ReLU output range is calibrated per sequence, on the first
frame's search crops at all scales (``calibrate``); a headroom factor keeps brighter later frames
from clipping. Measured on 5 frames of Bird2 spread over 100: conv4 relative error 0.8-1.1 %.

PyTorch 2.14 marks its quantized tensors deprecated for a future release; the project pins torch 2.14.1.
When the pin moves, this module moves to torchao (or ONNX Runtime, the runner-up when int8 was chosen).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.ao.nn.intrinsic.quantized import ConvReLU2d

# Range above the first frame's largest activation, for later frames: costs ~0.1 % more error.
HEADROOM = 1.25


def int8_supported() -> bool:
    """PyTorch's x86 quantized engine (FBGEMM/oneDNN int8 kernels) is built in on x86 CPUs."""
    return "x86" in torch.backends.quantized.supported_engines


class Int8Backbone(nn.Module):
    """conv4_features() of a batch-norm-folded MatchingNetwork, in int8. Call ``calibrate`` first."""

    def __init__(self, net):
        super().__init__()
        if not int8_supported():
            raise ValueError("int8 needs PyTorch's x86 quantized engine, absent on this machine: use precision 'fp32'")
        torch.backends.quantized.engine = "x86"
        # The folded float convs on raw pixels: the calibration pass runs these.
        self.float_layers = []
        for module in net.backbone:
            if isinstance(module, nn.Conv2d):
                if module.bias is None:
                    raise ValueError("Int8Backbone needs a batch-norm-folded network: call fold_batch_norm() first")
                self.float_layers.append([module.weight.detach().float(), module.bias.detach().float(), module.stride])
            elif isinstance(module, nn.MaxPool2d):
                self.float_layers.append("pool")
        first = self.float_layers[0]
        mean, std = net.pixel_mean.view(1, -1, 1, 1).float(), net.pixel_std.view(1, -1, 1, 1).float()
        first[0] = first[0] / std
        first[1] = first[1] - (first[0] * mean).sum((1, 2, 3))
        quantized = []
        for layer in self.float_layers:
            if layer == "pool":
                quantized.append(nn.MaxPool2d(3, 2))
                continue
            weight, bias, stride = layer
            scales = weight.abs().amax((1, 2, 3)).clamp(min=1e-12) / 127
            qweight = torch.quantize_per_channel(
                weight, scales.double(), torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8
            )
            conv = ConvReLU2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]), stride)
            conv.set_weight_bias(qweight, bias)
            quantized.append(conv)
        self.layers = nn.Sequential(*quantized)
        self.convs = [m for m in quantized if isinstance(m, ConvReLU2d)]
        self.calibrated = False

    @torch.inference_mode()
    def calibrate(self, images: torch.Tensor):
        """Set each conv's output range from the float network on ``images`` (B, 3, H, W), 0-255."""
        x, maxima = images.float(), []
        for layer in self.float_layers:
            if layer == "pool":
                x = F.max_pool2d(x, 3, 2)
            else:
                x = F.relu(F.conv2d(x, layer[0], layer[1], layer[2]))
                maxima.append(float(x.max()))
        for conv, peak in zip(self.convs, maxima):
            conv.scale = max(peak, 1e-6) * HEADROOM / 255
            conv.zero_point = 0
        self.calibrated = True

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """RGB images (B, 3, H, W), 0-255 values -> float conv4 features (B, 256, h, w)."""
        if not self.calibrated:
            raise RuntimeError("Int8Backbone.calibrate() must run before the first forward")
        x = torch.quantize_per_tensor(images.float(), 1.0, 0, torch.quint8)
        return self.layers(x).dequantize()
