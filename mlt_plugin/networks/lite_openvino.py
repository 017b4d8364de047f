"""The lite extractor's search forward on CPUs, on OpenVINO (issue 30).

EfficientNet-Lite0 is mostly depthwise convolutions, which torch runs slowly on CPUs and OpenVINO
fast: on 3 search crops of 255 px, 2-core AMD EPYC Zen 4, torch fp32 88 ms, OpenVINO fp32 32 ms,
OpenVINO bf16 19 ms (measured when the extractor was chosen). The graph is built here with OpenVINO's
own operations from the extractor's weights, batch norms folded into the convolutions (no tracing, as
networks/int8.py does for the paper's network). Input: the crops' uint8 pixels, NHWC as cropped.
"""
import numpy as np
import torch
import torch.nn as nn

from mlt_plugin.networks.extractors import LiteExtractor


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d):
    """(weight, bias) of conv followed by bn, as numpy float32."""
    scale = bn.weight.detach().float() / (bn.running_var.float() + bn.eps).sqrt()
    weight = conv.weight.detach().float() * scale.view(-1, 1, 1, 1)
    bias = bn.bias.detach().float() - bn.running_mean.float() * scale
    return weight.cpu().numpy(), bias.cpu().numpy()


class LiteOpenVINO:
    """Lite features of uint8 NHWC crops (B, S, S, 3) as float (B, 112, h, w), for a fixed B and S.

    ``precision``: "fp32" or "bf16" (OpenVINO's inference precision; bf16 needs AVX512-BF16 or AMX)."""

    def __init__(self, extractor: LiteExtractor, batch: int, size: int, precision: str = "fp32",
                 threads: int | None = None):
        import openvino as ov
        import openvino.opset13 as ops

        if not isinstance(extractor, LiteExtractor):
            raise ValueError(f"LiteOpenVINO builds the lite extractor, got {type(extractor).__name__}")

        def conv(x, conv_module, bn, relu6):
            weight, bias = _folded(conv_module, bn)
            k, stride, dilation = conv_module.kernel_size[0], conv_module.stride[0], conv_module.dilation[0]
            total = (k - 1) * dilation
            before = (total - 1) // 2 if stride == 2 and not conv_module.stem else total // 2
            pads = ([before, before], [total - before, total - before])
            if conv_module.groups > 1:  # depthwise: (groups, 1, 1, k, k)
                x = ops.group_convolution(x, ops.constant(weight.reshape(conv_module.groups, 1, 1, k, k)),
                                          [stride, stride], *pads, [dilation, dilation])
            else:
                x = ops.convolution(x, ops.constant(weight), [stride, stride], *pads, [dilation, dilation])
            x = ops.add(x, ops.constant(bias.reshape(1, -1, 1, 1)))
            return ops.clamp(x, 0.0, 6.0) if relu6 else x

        crops = ops.parameter([batch, size, size, 3], ov.Type.u8, name="crops")
        x = ops.transpose(ops.convert(crops, ov.Type.f32), ops.constant(np.array([0, 3, 1, 2], np.int64)))
        x = ops.multiply(ops.subtract(x, ops.constant(np.float32(127.0))), ops.constant(np.float32(1 / 128)))
        x = conv(x, extractor._conv_stem, extractor._bn0, True)
        for block in extractor._blocks:
            y = conv(x, block._expand_conv, block._bn0, True) if hasattr(block, "_expand_conv") else x
            y = conv(y, block._depthwise_conv, block._bn1, True)
            y = conv(y, block._project_conv, block._bn2, False)
            x = ops.add(x, y) if block.residual else y
        # NHWC out: handed to torch as a channels-last view, as networks/int8.py does.
        x = ops.transpose(x, ops.constant(np.array([0, 2, 3, 1], np.int64)))
        model = ov.Model([ops.result(x)], [crops], "mlt_lite_features")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
                  "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        self.request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
        self.batch, self.size = batch, size

    def __call__(self, crops: np.ndarray) -> torch.Tensor:
        if crops.shape != (self.batch, self.size, self.size, 3) or crops.dtype != np.uint8:
            raise ValueError(f"lite OpenVINO extractor built for uint8 crops {(self.batch, self.size, self.size, 3)}, "
                             f"got {crops.dtype} {crops.shape}")
        # The output buffer is the request's own, overwritten by the next call: copy it out.
        return torch.from_numpy(self.request.infer({0: crops})[0].copy()).permute(0, 3, 1, 2)
