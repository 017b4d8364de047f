"""The lite extractor's search forward on CPUs, on OpenVINO.

EfficientNet-Lite0 is mostly depthwise convolutions, which torch runs slowly on CPUs and OpenVINO
fast: on 3 search crops of 255 px, 2-core AMD EPYC Zen 4, torch fp32 88 ms, OpenVINO fp32 32 ms,
OpenVINO bf16 19 ms (measured when the extractor was chosen). The graph is built here with OpenVINO's
own operations from the extractor's weights, batch norms folded into the convolutions (no tracing, as
networks/int8.py does for the paper's network). Input: the crops' uint8 pixels, NHWC as cropped.

int8 (FakeQuantize nodes, which OpenVINO's CPU plugin runs as int8 convolutions): weights symmetric, one
scale per output channel; every convolution's input quantised. Most ranges need no calibration: the
stem sees (pixel - 127) / 128 in [-1, 1], depthwise and projection convolutions see ReLU6 outputs, exactly [0, 6]. Only
the expansion convolutions see a block's linear output (signed); their symmetric ranges
(``activation_maxima``: one per block with an expansion, 10) are measured on training crops and shipped
beside the weight file (tools/calibrate_int8.py), or measured on the first sequence's first crops.
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F



def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d):
    """(weight, bias) of conv followed by bn, as numpy float32."""
    scale = bn.weight.detach().float() / (bn.running_var.float() + bn.eps).sqrt()
    weight = conv.weight.detach().float() * scale.view(-1, 1, 1, 1)
    bias = bn.bias.detach().float() - bn.running_mean.float() * scale
    return weight.cpu().numpy(), bias.cpu().numpy()


class LiteOpenVINO:
    """Lite features of uint8 NHWC crops (B, S, S, 3) as float (B, 112, h, w), for a fixed B and S.

    ``precision``: "fp32", "bf16" (OpenVINO's inference precision; needs AVX512-BF16 or AMX) or "int8"
    (with ``maxima``, see the module docstring)."""

    def __init__(self, extractor: "LiteExtractor", batch: int, size: int, precision: str = "fp32",
                 threads: int | None = None, maxima=None):
        import openvino as ov
        import openvino.opset13 as ops

        if extractor.name != "lite":  # by name: extractors.py imports this module
            raise ValueError(f"LiteOpenVINO builds the lite extractor, got {type(extractor).__name__}")
        int8 = precision == "int8"
        expansions = sum(hasattr(b, "_expand_conv") for b in extractor._blocks)
        if int8:
            maxima = torch.as_tensor(maxima if maxima is not None else [], dtype=torch.float32)
            if maxima.shape != (expansions,) or not torch.isfinite(maxima).all() or (maxima <= 0).any():
                raise ValueError(f"lite int8 needs {expansions} positive activation ranges, got {maxima.tolist()}")
            ranges = iter(maxima.tolist())

        def fake_quantize(x, low, high, levels):
            low, high = ops.constant(np.asarray(low, np.float32)), ops.constant(np.asarray(high, np.float32))
            return ops.fake_quantize(x, low, high, low, high, levels)

        def conv(x, conv_module, bn, relu6, input_range=None):
            weight, bias = _folded(conv_module, bn)
            weight_node = ops.constant(weight)
            if int8:
                low = 0.0 if input_range is None else -input_range  # None: a ReLU6 output, [0, 6]
                x = fake_quantize(x, low, 6.0 if input_range is None else input_range, 256 if low == 0 else 255)
                peak = np.maximum(np.abs(weight).max((1, 2, 3), keepdims=True), 1e-12)
                weight_node = fake_quantize(weight_node, -peak, peak, 255)
            k, stride, dilation = conv_module.kernel_size[0], conv_module.stride[0], conv_module.dilation[0]
            total = (k - 1) * dilation
            before = (total - 1) // 2 if stride == 2 and not conv_module.stem else total // 2
            pads = ([before, before], [total - before, total - before])
            if conv_module.groups > 1:  # depthwise: (groups, 1, 1, k, k)
                shape = ops.constant(np.array([conv_module.groups, 1, 1, k, k], np.int64))
                x = ops.group_convolution(x, ops.reshape(weight_node, shape, False), [stride, stride], *pads,
                                          [dilation, dilation])
            else:
                x = ops.convolution(x, weight_node, [stride, stride], *pads, [dilation, dilation])
            x = ops.add(x, ops.constant(bias.reshape(1, -1, 1, 1)))
            return ops.clamp(x, 0.0, 6.0) if relu6 else x

        crops = ops.parameter([batch, size, size, 3], ov.Type.u8, name="crops")
        x = ops.transpose(ops.convert(crops, ov.Type.f32), ops.constant(np.array([0, 3, 1, 2], np.int64)))
        x = ops.multiply(ops.subtract(x, ops.constant(np.float32(127.0))), ops.constant(np.float32(1 / 128)))
        x = conv(x, extractor._conv_stem, extractor._bn0, True, input_range=1.0)  # (x - 127) / 128 in [-1, 1]
        for block in extractor._blocks:
            expand = hasattr(block, "_expand_conv")
            y = conv(x, block._expand_conv, block._bn0, True, input_range=next(ranges) if int8 else None) if expand else x
            y = conv(y, block._depthwise_conv, block._bn1, True)
            y = conv(y, block._project_conv, block._bn2, False)
            x = ops.add(x, y) if block.residual else y
        # NHWC out: handed to torch as a channels-last view, as networks/int8.py does.
        x = ops.transpose(x, ops.constant(np.array([0, 2, 3, 1], np.int64)))
        model = ov.Model([ops.result(x)], [crops], "mlt_lite_features")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                  "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        self.request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
        self.batch, self.size = batch, size

    def __call__(self, crops: np.ndarray) -> torch.Tensor:
        if crops.shape != (self.batch, self.size, self.size, 3) or crops.dtype != np.uint8:
            raise ValueError(f"lite OpenVINO extractor built for uint8 crops {(self.batch, self.size, self.size, 3)}, "
                             f"got {crops.dtype} {crops.shape}")
        # The output buffer is the request's own, overwritten by the next call: copy it out.
        return torch.from_numpy(self.request.infer({0: crops})[0].copy()).permute(0, 3, 1, 2)


@torch.inference_mode()
def activation_maxima(extractor: "LiteExtractor", crops: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """The input range of each expansion convolution over ``crops`` (N, 3, H, W), 0-255: the mean over crops
    of each crop's largest |value| (one odd crop does not stretch the range for all others), (10,) fp32."""
    peaks = []
    for start in range(0, len(crops), batch):
        x = crops[start : start + batch].float()
        x = F.relu6(extractor._bn0(extractor._conv_stem((x - 127.0) / 128.0)))
        crop_peaks = []
        for block in extractor._blocks:
            if hasattr(block, "_expand_conv"):
                crop_peaks.append(x.abs().amax((1, 2, 3)))
            x = block(x)
        peaks.append(torch.stack(crop_peaks, 1))
    return torch.cat(peaks).mean(0).clamp(min=1e-6)
