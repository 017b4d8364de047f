"""Both training stages: the matching network (eq. 6) and the meta-learner (eq. 7).

One loop for both: Adam, optional bf16/fp16 autocast, a progress bar, losses in ``log.csv``
(and TensorBoard when installed), checkpoints (model, optimiser, iteration, RNG state) that resume
exactly, fp16 safetensors exports, and DistributedDataParallel under ``torchrun``.
"""
import csv
import os
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from mlt_plugin.networks.losses import label_map, logistic_loss, meta_gradient
from mlt_plugin.networks.matching import ADAPTED_CHANNELS, BASE_CHANNELS, MatchingNetwork
from mlt_plugin.networks.meta_learner import MetaLearner
from mlt_plugin.networks.weights_io import load_matching, save_weights
from mlt_plugin.params import resolve_device
from mlt_plugin.training.sampling import EpisodeDataset, PairDataset

LABEL_RADIUS = 2.0  # cells on the 17x17 map (16 px in the 255 crop), as in SiamFC


class MatchingStage:
    """Eq. (6) on (x, z) pairs. ``channels`` 192 for MLT, 224 for MLT-mt."""

    export_name = {BASE_CHANNELS: "matching.safetensors", ADAPTED_CHANNELS: "mlt_mt.safetensors"}

    def __init__(self, channels, device):
        self.model = MatchingNetwork(channels).to(device)
        self.device = device

    def trainable(self):
        return self.model

    def dataset(self, sources, iterations, batch_size, seed, first_sample):
        return PairDataset(sources, iterations, batch_size, seed=seed, first_sample=first_sample)

    def loss(self, module, batch):
        logits = module(batch["x"].float(), batch["z"].float())
        return logistic_loss(logits, label_map(batch["centers"], LABEL_RADIUS))

    def export(self, path):
        save_weights(path / self.export_name[self.model.out_channels], self.model, metadata={"variant": "matching"})


class MetaStage:
    """Eq. (7) on episodes: delta from z_delta (the first M patches), loss on all M' patches z_reg."""

    export_name = "mlt.safetensors"

    def __init__(self, matching_weights, device, num_delta=8, num_reg=16):
        self.matching = load_matching(matching_weights, BASE_CHANNELS).to(device).eval()
        self.matching.requires_grad_(False)
        self.model = MetaLearner().to(device)
        self.device = device
        self.num_delta, self.num_reg = num_delta, num_reg

    def trainable(self):
        return self.model

    def dataset(self, sources, iterations, batch_size, seed, first_sample):
        return EpisodeDataset(sources, iterations, batch_size, self.num_reg, seed=seed, first_sample=first_sample)

    def loss(self, module, batch):
        net = self.matching
        batch_size = batch["x"].shape[0]
        with torch.no_grad():
            x4 = net.conv4_features(batch["x"].float()).float()
            z4 = net.conv4_features(batch["z"].float()).float()
        labels = label_map(batch["centers"], LABEL_RADIUS)
        grouped = lambda t: t.view(batch_size, self.num_reg, *t.shape[1:])  # noqa: E731
        delta_z4 = grouped(z4)[:, : self.num_delta].flatten(0, 1)
        delta_labels = grouped(labels)[:, : self.num_delta].flatten(0, 1)
        delta = meta_gradient(net, x4, delta_z4, delta_labels)
        meta = module.module if hasattr(module, "module") else module
        if not meta.delta_scale_set:
            meta.set_delta_scale(delta)
        w_target, attention = module(delta)
        template = net.embed(x4, w_target=w_target, attention=attention)
        per_episode = lambda t: t.repeat_interleave(self.num_reg, 0)  # noqa: E731
        search = net.embed(z4, w_target=per_episode(w_target), attention=per_episode(attention))
        logits = net.correlate(per_episode(template), search)
        return logistic_loss(logits, labels)

    def export(self, path):
        save_weights(path / self.export_name, self.matching, self.model, metadata={"variant": "mlt"})


def _autocast(device, enabled):
    if not enabled:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cpu" else torch.float16)


def _distributed():
    """(rank, world_size), initialising the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def train(stage_name, sources, out, iterations, batch_size=8, lr=1e-4, device=None, amp=False, workers=2,
          seed=0, resume=False, checkpoint_every=500, matching_weights=None, threads=None):
    """Run (or resume) one training stage; returns the final loss. ``stage_name``: matching | mt | meta."""
    rank, world = _distributed()
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} is not divisible by the {world} processes")
    torch.manual_seed(seed)
    if stage_name == "meta":
        if matching_weights is None:
            raise ValueError("meta-learner training needs --matching-weights (the matching stage's export)")
        stage = MetaStage(matching_weights, device)
    elif stage_name in ("matching", "mt"):
        stage = MatchingStage(BASE_CHANNELS if stage_name == "matching" else ADAPTED_CHANNELS, device)
    else:
        raise ValueError(f"unknown training stage {stage_name!r}: matching, mt or meta")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    model = stage.trainable()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start = 0
    if resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state["stage"] != stage_name:
            raise ValueError(f"{checkpoint_path} is a {state['stage']!r} checkpoint, not {stage_name!r}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["iteration"]
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    module = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    model.train()

    local = batch_size // world
    dataset = stage.dataset(sources, iterations, local, seed, first_sample=rank * local)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=range(start, iterations), num_workers=workers,
        persistent_workers=False, prefetch_factor=2 if workers else None,
    )
    log_file = open(out / "log.csv", "a", newline="") if rank == 0 else None
    log = csv.writer(log_file) if log_file else None
    if log and start == 0:
        log.writerow(["iteration", "loss", "lr", "seconds"])
    board = _tensorboard(out) if rank == 0 else None

    def save(iteration):
        if rank:
            return
        state = {"stage": stage_name, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "iteration": iteration, "rng": _rng_state()}
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)
        stage.export(out)
        log_file.flush()

    progress = tqdm(total=iterations, initial=start, disable=rank != 0, desc=f"train {stage_name}", unit="it")
    started, loss_value = time.time(), float("nan")
    iteration = start
    for iteration, batch in zip(range(start, iterations), loader):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with _autocast(device, amp):
            loss = stage.loss(module, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        if log:
            log.writerow([iteration + 1, f"{loss_value:.6f}", lr, f"{time.time() - started:.1f}"])
        if board:
            board.add_scalar(f"{stage_name}/loss", loss_value, iteration + 1)
        progress.set_postfix(loss=f"{loss_value:.4f}")
        progress.update()
        if (iteration + 1) % checkpoint_every == 0:
            save(iteration + 1)
        iteration += 1
    save(iteration)
    progress.close()
    if log_file:
        log_file.close()
    return loss_value


def _tensorboard(out):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional: log.csv always has the losses
        return None
    return SummaryWriter(str(out / "tensorboard"))
