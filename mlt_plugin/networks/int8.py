"""conv1-4 in int8 for the per-frame search forward on CPUs, on OpenVINO.

The graph is built here from the batch-norm-folded network with OpenVINO's own operations (no tracing),
with FakeQuantize nodes where int8 applies; OpenVINO's CPU plugin runs each such convolution in int8
(VNNI or AMX kernels) and keeps everything else in fp32:
- the input: the crops' own 0-255 uint8 pixels, NHWC as cropped (exact in uint8). The pixel
  normalisation is folded into conv1, exact as the convolutions have no padding;
- weights: int8, symmetric, one scale per output channel;
- activations: uint8 after each ReLU, over [0, the calibrated maximum] of that layer. Only conv1-3's
  outputs are quantised (they feed the next convolution); conv4's output leaves in fp32.

Calibration is done once per network, not per sequence: ``activation_maxima`` over real training crops
gives each layer's range, stored beside the weight file (``calibration_path``: a few numbers, so that
calibrating never rewrites a weight file) by tools/calibrate_int8.py, with a digest of the conv1-4
weights it was measured on. Without that file the tracker measures the ranges on its first sequence's
first search crops, once.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F



def int8_supported() -> bool:
    """OpenVINO's CPU plugin on an x86 CPU (its int8 kernels need SSE4.2 at least, VNNI/AMX for speed)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def calibration_path(weights_path) -> Path:
    """The int8 ranges of a weight file: NAME.safetensors -> NAME.int8.json beside it."""
    return Path(weights_path).with_suffix(".int8.json")


def backbone_digest(net) -> str:
    """sha256 of an unfolded MatchingNetwork's conv1-4 (weights and batch norms, as fp16, as stored)."""
    digest = hashlib.sha256()
    for key, value in net.state_dict().items():
        if key.startswith("backbone.") and value.is_floating_point():
            digest.update(key.encode() + value.detach().cpu().half().numpy().tobytes())
    return digest.hexdigest()


def write_calibration(weights_path, net, maxima: torch.Tensor, crops: int):
    record = {"activation_max": [float(v) for v in maxima], "backbone_sha256": backbone_digest(net), "crops": crops}
    calibration_path(weights_path).write_text(json.dumps(record, indent=1) + "\n")


def read_calibration(weights_path, net):
    """The stored ranges (3,) for ``net`` loaded from ``weights_path``, None without a calibration file;
    ValueError when the file was measured on other conv1-4 weights (retrained since)."""
    path = calibration_path(weights_path)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        maxima, digest = torch.tensor(record["activation_max"], dtype=torch.float32), record["backbone_sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"int8 calibration file {path} is unreadable ({err}): delete it or rerun "
                         "tools/calibrate_int8.py") from err
    if digest != backbone_digest(net):
        raise ValueError(f"int8 calibration file {path} was measured on other weights than {weights_path}: "
                         "rerun tools/calibrate_int8.py on it, or delete it")
    return maxima


def folded_layers(net) -> list:
    """conv1-4 of a batch-norm-folded MatchingNetwork on raw 0-255 pixels: [(weight, bias, stride) or "pool"]."""
    layers = []
    for module in net.backbone:
        if isinstance(module, nn.Conv2d):
            if module.bias is None:
                raise ValueError("int8 needs a batch-norm-folded network: call fold_batch_norm() first")
            layers.append([module.weight.detach().float().cpu(), module.bias.detach().float().cpu(), module.stride[0]])
        elif isinstance(module, nn.MaxPool2d):
            layers.append("pool")
    first = layers[0]
    mean, std = (net.backbone.pixel_mean.view(1, -1, 1, 1).float().cpu(),
                 net.backbone.pixel_std.view(1, -1, 1, 1).float().cpu())
    first[0] = first[0] / std
    first[1] = first[1] - (first[0] * mean).sum((1, 2, 3))
    return layers


@torch.inference_mode()
def activation_maxima(net, crops: torch.Tensor, batch: int = 8) -> torch.Tensor:
    """Each of conv1-3's ReLU output ranges over ``crops`` (N, 3, H, W), 0-255: the mean over crops of
    each crop's maximum (a single bright crop does not stretch the range for all others), (3,) fp32."""
    layers, peaks = folded_layers(net), []
    for start in range(0, len(crops), batch):
        x, crop_peaks = crops[start : start + batch].float().cpu(), []
        for layer in layers:
            if layer == "pool":
                x = F.max_pool2d(x, 3, 2)
            else:
                x = F.relu(F.conv2d(x, layer[0], layer[1], layer[2]))
                crop_peaks.append(x.amax((1, 2, 3)))
        peaks.append(torch.stack(crop_peaks[:3], 1))
    return torch.cat(peaks).mean(0).clamp(min=1e-6)


class Int8Backbone:
    """conv4 features of uint8 NHWC crops (B, S, S, 3) as float (B, 256, h, w), for a fixed B and S."""

    def __init__(self, net, batch: int, size: int, maxima, threads: int | None = None):
        import openvino as ov
        import openvino.opset13 as ops

        maxima = torch.as_tensor(maxima, dtype=torch.float32)
        if maxima.shape != (3,) or not torch.isfinite(maxima).all() or (maxima <= 0).any():
            raise ValueError(f"int8 activation ranges must be 3 positive numbers (conv1-3), got {maxima.tolist()}")

        def fake_quantize(x, low, high, levels):
            low, high = ops.constant(np.asarray(low, np.float32)), ops.constant(np.asarray(high, np.float32))
            return ops.fake_quantize(x, low, high, low, high, levels)

        crops = ops.parameter([batch, size, size, 3], ov.Type.u8, name="crops")
        x = ops.transpose(ops.convert(crops, ov.Type.f32), ops.constant(np.array([0, 3, 1, 2], np.int64)))
        x = fake_quantize(x, 0.0, 255.0, 256)
        convs = 0
        for layer in folded_layers(net):
            if layer == "pool":
                x = ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [3, 3], "floor", "explicit").output(0)
                continue
            weight, bias, stride = layer
            peak = weight.abs().amax((1, 2, 3), keepdim=True).clamp(min=1e-12).numpy()
            w = fake_quantize(ops.constant(weight.numpy()), -peak, peak, 255)
            x = ops.convolution(x, w, [stride, stride], [0, 0], [0, 0], [1, 1])
            x = ops.relu(ops.add(x, ops.constant(bias.numpy().reshape(1, -1, 1, 1))))
            if convs < 3:  # conv1-3 feed a convolution: uint8; conv4's output stays float
                x = fake_quantize(x, 0.0, float(maxima[convs]), 256)
            convs += 1
        # NHWC out: handed to torch as a channels-last view, in which the last layer's 1x1 conv is ~2x faster.
        x = ops.transpose(x, ops.constant(np.array([0, 2, 3, 1], np.int64)))
        model = ov.Model([ops.result(x)], [crops], "mlt_conv4_int8")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                  "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        self.request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
        self.batch, self.size = batch, size

    def __call__(self, crops: np.ndarray) -> torch.Tensor:
        if crops.shape != (self.batch, self.size, self.size, 3) or crops.dtype != np.uint8:
            raise ValueError(f"int8 backbone built for uint8 crops {(self.batch, self.size, self.size, 3)}, "
                             f"got {crops.dtype} {crops.shape}")
        # The output buffer is the request's own, overwritten by the next call: copy it out.
        return torch.from_numpy(self.request.infer({0: crops})[0].copy()).permute(0, 3, 1, 2)
