"""conv1-4 of MLT's search crops on each candidate inference engine: time, error against torch fp32.

    python tools/engine_table.py ../shared/data/otb/Bird2 --calib ../shared/data/otb/Jogging --threads 2

Inputs are real crops: the ground-truth box of every 10th frame of PATH at the tracker's 3 search scales
(255x255, 0-255 values), timed as one batch of 3 (the paper config) and as a batch of 1 (the fast preset).
int8 engines are calibrated on crops of another sequence (--calib), never on the timed ones. MLT's own
int8 graph has a fixed batch: it is built once per batch size. Error is
||y - y_fp32|| / ||y_fp32|| over the conv4 features. Engines whose package is not installed are skipped.
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from mlt_plugin.demo import load_target
from mlt_plugin.networks.weights_io import load_weights
from mlt_plugin.params import load_parameters
from mlt_plugin.tracking.crops import context_size, crop_square


def real_crops(path, every=10, limit=12):
    """(N, 3, 255, 255) float crops of a sequence's target at the tracker's three scales."""
    p = load_parameters("default")
    sequence = load_target(path)
    crops = []
    for index in range(0, len(sequence), every)[:limit]:
        if not sequence.visible[index]:
            continue
        image = sequence.frame(index)
        x, y, w, h = sequence.boxes[index]
        side = context_size(w, h, p.context_amount) * p.instance_size / p.exemplar_size
        for scale in p.scales:
            crops.append(crop_square(image, (x + w / 2, y + h / 2), side * scale, p.instance_size, image.mean((0, 1))))
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().contiguous()


def median_ms(run, x, repeats):
    x = getattr(run, "prepare", lambda t: t)(x)  # untimed: the input in the engine's own layout
    run(x)
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - tic)
    return 1000 * statistics.median(times)


def engines(net, calib, threads):
    """(name, build) pairs; build() returns a function of a (B, 3, 255, 255) float tensor -> conv4 numpy."""

    def torch_fp32():
        cl = lambda x: net.conv4_features(x.contiguous(memory_format=torch.channels_last))  # noqa: E731
        return lambda x: cl(x).float().numpy()

    def torch_bf16():
        def run(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net.conv4_features(x.contiguous(memory_format=torch.channels_last)).float().numpy()
        return run

    def mlt_int8(batch):
        def build():
            from mlt_plugin.networks.int8 import Int8Backbone, activation_maxima

            backbone = Int8Backbone(net, batch, 255, activation_maxima(net, calib))
            run = lambda crops: backbone(crops).numpy()  # noqa: E731
            run.prepare = lambda x: x.permute(0, 2, 3, 1).to(torch.uint8).contiguous().numpy()  # as the tracker crops
            return run
        return build

    def openvino(hint, quantize=False):
        def build():
            import openvino as ov

            model = ov.convert_model(Conv4(net), example_input=calib[:1], input=[(-1, 3, 255, 255)])
            if quantize:
                import nncf

                model = nncf.quantize(model, nncf.Dataset([c[None].numpy() for c in calib]), subset_size=len(calib))
            compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                              "INFERENCE_PRECISION_HINT": hint,
                                                              "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()
            return lambda x: request.infer({0: x.numpy()})[0].copy()
        return build

    def onnxruntime(quantize=False):
        def build():
            import tempfile

            import onnxruntime as ort

            folder = Path(tempfile.mkdtemp())
            torch.onnx.export(Conv4(net), (calib[:1],), folder / "fp32.onnx", input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "b"}, "y": {0: "b"}}, dynamo=False)
            path = folder / "fp32.onnx"
            if quantize:
                from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

                class Reader(CalibrationDataReader):
                    def __init__(self):
                        self.items = iter([{"x": c[None].numpy()} for c in calib])

                    def get_next(self):
                        return next(self.items, None)

                quantize_static(str(path), str(folder / "int8.onnx"), Reader(), quant_format=QuantFormat.QOperator,
                                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
                path = folder / "int8.onnx"
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return lambda x: session.run(None, {"x": x.numpy()})[0]
        return build

    def torchao_int8():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer, get_default_x86_inductor_quantization_config)

        quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
        batch = torch.export.Dim("batch", min=1, max=8)
        exported = torch.export.export(Conv4(net), (calib[:3],), dynamic_shapes=({0: batch},)).module()
        prepared = prepare_pt2e(exported, quantizer)
        for start in range(0, len(calib), 3):
            prepared(calib[start : start + 3])
        torch._inductor.config.freezing = True  # constant weights: prepacked int8 kernels (torchao's recipe)
        compiled = torch.compile(convert_pt2e(prepared))
        return lambda x: compiled(x).numpy()

    return [("torch fp32", torch_fp32), ("torch bf16 autocast", torch_bf16),
            ("MLT int8 (OpenVINO graph), batch 3", mlt_int8(3)), ("MLT int8 (OpenVINO graph), batch 1", mlt_int8(1)),
            ("OpenVINO fp32", openvino("f32")), ("OpenVINO bf16", openvino("bf16")),
            ("OpenVINO int8 (NNCF)", openvino("f32", quantize=True)),
            ("ONNX Runtime fp32", onnxruntime()), ("ONNX Runtime int8 (static QOperator)", onnxruntime(quantize=True)),
            ("torchao int8 (pt2e, inductor)", torchao_int8)]


class Conv4(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.conv4_features(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("path", help="sequence whose crops are timed")
    parser.add_argument("--calib", required=True, help="another sequence, for int8 calibration")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", nargs="*", help="engine names containing these words")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, _ = load_weights("mlt")
    net = net.eval().fold_batch_norm()
    crops, calib = real_crops(args.path), real_crops(args.calib)
    with torch.inference_mode():
        reference = net.conv4_features(crops).numpy()
    print(f"{len(crops)} crops of {args.path}, calibration {len(calib)} crops of {args.calib}, {args.threads} threads")
    print(f"{'engine':<38}{'build s':>9}{'3 crops ms':>12}{'1 crop ms':>11}{'rel. error':>12}")
    for name, build in engines(net, calib, args.threads):
        if args.only and not any(w in name for w in args.only):
            continue
        try:
            tic = time.perf_counter()
            with torch.inference_mode():
                run = build()
                built = time.perf_counter() - tic
                step = 1 if "batch 1" in name else 3
                prepare = getattr(run, "prepare", lambda t: t)
                out = np.concatenate([run(prepare(crops[i : i + step])) for i in range(0, len(crops) - 2, step)])
                error = np.linalg.norm(out - reference[: len(out)]) / np.linalg.norm(reference[: len(out)])
                three = median_ms(run, crops[:3], args.repeats) if step == 3 else float("nan")
                one = median_ms(run, crops[:1], args.repeats) if "batch 3" not in name else float("nan")
        except Exception as err:  # a missing package or an engine that cannot take this model: say so, go on
            print(f"{name:<38} skipped: {type(err).__name__}: {str(err).splitlines()[0][:90]}")
            continue
        print(f"{name:<38}{built:>9.1f}{three:>12.1f}{one:>11.1f}{100 * error:>11.2f}%", flush=True)


if __name__ == "__main__":
    main()
