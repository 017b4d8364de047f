"""Training steps/s of both stages on random inputs of the training shapes (batch 8, M' = 16).

    PYTHONPATH=. python3 tools/train_speed.py --steps 5            # this CPU, every matching variant
    PYTHONPATH=. python3 tools/train_speed.py --device cuda --steps 30

The matching stage is timed as the trainer runs it (channels-last) and, for comparison, with the plain
NCHW layout of before; each with and without autocast, at the paper's 255 search crop and at 191.
"""
import argparse
import json
import sys
import time

import torch


def _timed(step, steps, device):
    step()  # warm-up: kernels chosen, memory allocated
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()  # waits for the device
    return (time.perf_counter() - started) / steps


def train_speed(device, steps, amp, variants=((True, 255),)):
    """{name: {steps_per_s, s_per_step, amp}} for the meta stage and each matching (channels_last, search
    size) variant."""
    from mlt_plugin.networks.weights_io import default_file
    from mlt_plugin.training.trainer import MatchingStage, MetaStage, amp_dtype

    generator = torch.Generator().manual_seed(0)
    batch_size, num_reg = 8, 16
    dtype = amp_dtype(device)  # as `mlt train --amp`: bf16 where the device has it, else fp16 with loss scaling
    jobs = {}
    for channels_last, size in variants:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        stage = MatchingStage(192, device, search_size=size, memory_format=layout)
        batch = {"x": torch.rand(batch_size, 3, 127, 127, generator=generator) * 255,
                 "z": torch.rand(batch_size, 3, size, size, generator=generator) * 255,
                 "centers": torch.zeros(batch_size, 2)}
        jobs[f"matching {'channels-last' if channels_last else 'NCHW'} {size}"] = (stage, batch)
    meta_batch = {"x4": torch.rand(batch_size, 256, 8, 8, generator=generator),
                  "z4": torch.rand(batch_size * num_reg, 256, 24, 24, generator=generator),
                  "centers": torch.zeros(batch_size * num_reg, 2)}
    jobs["meta"] = (MetaStage(default_file("paper", "mlt"), device, num_reg=num_reg), meta_batch)
    results = {}
    for name, (stage, batch) in jobs.items():
        module = stage.trainable().train()
        optimizer = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=1e-4, fused=True)
        scaler = torch.amp.GradScaler(device.type, enabled=amp and dtype == torch.float16)
        batch = {k: v.to(device) for k, v in batch.items()}

        def step():
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                loss = stage.loss(module, batch)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            return loss

        seconds = _timed(step, steps, device)
        results[name] = {"steps_per_s": 1 / seconds, "s_per_step": seconds, "amp": str(dtype) if amp else None}
        print(f"train {name:28s} amp={amp}: {1 / seconds:.2f} steps/s ({seconds:.2f} s/step)", flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = [(False, 255), (True, 255), (False, 191), (True, 191)]
    results = {f"amp={amp}": train_speed(device, args.steps, amp, variants) for amp in (False, True)}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
