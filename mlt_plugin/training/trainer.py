"""Both training stages: the matching network (eq. 6) and the meta-learner (eq. 7).

One loop for both: Adam, optional bf16/fp16 autocast, a progress bar, losses in ``log.csv``
(and TensorBoard when installed), checkpoints (model, optimiser, iteration, RNG state) that resume
exactly, fp16 safetensors exports, and DistributedDataParallel under ``torchrun``.
"""
import csv
import json
import math
import os
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from mlt_plugin.geometry import EXEMPLAR_SIZE, INSTANCE_SIZE, LABEL_RADIUS, TOTAL_STRIDE
from mlt_plugin.networks.extractors import EXTRACTORS
from mlt_plugin.networks.losses import label_map, logistic_loss, meta_gradient, soft_logistic_loss
from mlt_plugin.networks.matching import ADAPTED_CHANNELS, BASE_CHANNELS, MatchingNetwork
from mlt_plugin.networks.meta_learner import MetaLearner
from mlt_plugin.networks.weights_io import load_matching, load_weights, save_weights
from mlt_plugin.params import cpu_has_bf16, resolve_device
from mlt_plugin.training.box_stage import BoxStage
from mlt_plugin.training.crop_cache import prepare_crop_cache
from mlt_plugin.training.feature_cache import CachedEpisodeDataset, prepare_feature_cache
from mlt_plugin.training.sampling import ClassificationDataset, CropSampler, EpisodeDataset, PairDataset, class_index
from mlt_plugin.training.teacher import TEACHER_CHANNELS, NanoTrackTeacher, feature_distillation_loss


class Classifier(torch.nn.Module):
    """The backbone stage's network: conv1-4 of a matching network, global average pooling, one linear layer.
    It holds only what its loss uses (not the matching network's last layer): under DistributedDataParallel
    every parameter must get a gradient at every step."""

    def __init__(self, backbone, channels, classes):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(channels, classes)

    def forward(self, images):
        return self.head(self.backbone(images).mean((2, 3)))


class BackboneStage:
    """Before the matching stage: conv1-4 learn general features by classifying labelled objects
    (Tiny ImageNet's 200 classes) from exemplar-scale crops, through a small head dropped afterwards:
    global average pooling of conv4 and one linear layer. The paper needs no such stage, as its matching
    network learns from ILSVRC VID's 4,000 videos; here the videos are a few dozen, and 110,000 labelled
    images are what carries many object identities. Exported as a matching network file whose conv1-4
    are trained and whose last layer is fresh, the ``--init`` of ``mlt train matching`` / ``mt``."""

    export_name = "backbone.safetensors"

    def __init__(self, device, memory_format=torch.channels_last):
        self.device, self.memory_format = device, memory_format
        self.classes = None  # {label: index}, fixed by the training sources in prepare()
        self.net = self.model = None

    def _build(self, count):
        # The exported matching network shares its extractor with the classifier; its last layer stays out of
        # the trained model (fresh, or as --init gave it).
        self.net = MatchingNetwork(BASE_CHANNELS).to(self.device).to(memory_format=self.memory_format)
        self.model = Classifier(self.net.backbone, self.net.conv5.in_channels, count).to(self.device)

    def trainable(self):
        return self.model

    def load_init(self, path):
        """Warm start of conv1-4 (and the rest of the matching network) from a weight file; the head starts fresh."""
        self.net.load_state_dict(load_matching(path, BASE_CHANNELS).state_dict())

    def prepare(self, sources, rank, world):
        self.classes = class_index(sources)
        self._build(len(self.classes))
        return sources

    def dataset(self, sources, iterations, batch_size, seed, first_sample):
        return ClassificationDataset(sources, self.classes, iterations, batch_size, seed=seed, first_sample=first_sample)

    def logits(self, module, x):
        return module(x.float().contiguous(memory_format=self.memory_format))

    def loss(self, module, batch):
        return torch.nn.functional.cross_entropy(self.logits(module, batch["x"]), batch["label"])

    def validation_data(self, sources, val_sources, batch_size, count, seed):
        """Fixed batches of held-out labelled images (e.g. Tiny ImageNet val) and of the training images."""
        def fixed(from_sources):
            data = ClassificationDataset(from_sources, self.classes, count, batch_size, seed=seed + 1000)
            return [{k: v.to(self.device) for k, v in data[i].items()} for i in range(count)]
        return {"validation": fixed(val_sources), "training": fixed(sources)}

    def validation(self, module, data) -> dict:
        """Cross-entropy and top-1 accuracy in eval mode, held-out first (its loss picks the best state)."""
        was_training = module.training
        module.eval()
        result = {}
        with torch.no_grad():
            for name, batches in data.items():
                logits = [(self.logits(module, b["x"]), b["label"]) for b in batches]
                result[name] = float(torch.stack([torch.nn.functional.cross_entropy(z, y) for z, y in logits]).mean())
                result[f"{name}_accuracy"] = float(torch.cat([z.argmax(1) == y for z, y in logits]).float().mean())
        module.train(was_training)
        return {**result, "gap": result["validation"] - result["training"]}

    def export(self, path, suffix=""):
        save_weights(path / self.export_name.replace(".safetensors", f"{suffix}.safetensors"), self.net,
                     metadata={"variant": "backbone", "classes": len(self.classes)})


class DistilledMatching(torch.nn.Module):
    """Training-time wrapper for feature distillation: the matching network's logits, and its search
    conv4 through a 1x1 projection onto the teacher's feature channels. Only the network is exported."""

    def __init__(self, net, channels):
        super().__init__()
        self.net = net
        self.projection = torch.nn.Conv2d(net.conv5.in_channels, channels, 1)

    def forward(self, x, z):
        x4, z4 = self.net.conv4_features(x), self.net.conv4_features(z)
        return self.net.correlate(self.net.embed(x4), self.net.embed(z4)), self.projection(z4)


class MatchingStage:
    """Eq. (6) on (x, z) pairs. ``channels`` 192 for MLT, 224 for MLT-mt. Channels-last memory: 1.2-1.3x
    faster steps on CPU (measured in the training README). ``teacher``: NanoTrack v2's folder, whose outputs on
    each training pair add terms to eq. (6), each weighted by ``distill_weight``, at the levels of
    ``distill``: "map" (its response map as a soft label, ``soft_logistic_loss``), "features" (conv4 through a
    learned projection toward its search features, ``feature_distillation_loss``) or "both". Validation stays
    eq. (6) alone on held-out pairs."""

    export_name = {BASE_CHANNELS: "matching.safetensors", ADAPTED_CHANNELS: "mlt_mt.safetensors"}

    def __init__(self, channels, device, search_size=INSTANCE_SIZE, memory_format=torch.channels_last,
                 last_layer_only=False, extractor="paper", feature_cache=None, cache_options=None, teacher=None,
                 distill_weight=1.0, distill="map", train_blocks=0, backbone_lr_factor=0.1):
        if search_size < EXEMPLAR_SIZE + TOTAL_STRIDE:
            raise ValueError(f"search size {search_size} must be at least {EXEMPLAR_SIZE + TOTAL_STRIDE} px "
                             f"(the {EXEMPLAR_SIZE} px exemplar plus one response cell)")
        self.memory_format = memory_format  # contiguous_format: the plain layout, for speed comparisons
        self.model = MatchingNetwork(channels, extractor).to(device).to(memory_format=memory_format)
        self.device = device
        self.search_size = search_size
        # conv1-4 frozen as loaded (weights and batch-norm statistics): only w5, bn5 and the response
        # scale and bias train, e.g. MLT-mt's 224-channel last layer on MLT's trained backbone.
        self.last_layer_only = last_layer_only
        self.model.backbone.requires_grad_(not last_layer_only)
        # Fine-tuning a pretrained extractor (SiamRPN++'s recipe): its last ``train_blocks`` blocks
        # train at ``backbone_lr_factor`` times the head's learning rate, the earlier ones stay frozen, and every
        # batch norm keeps its ImageNet statistics (eval mode; its scale and shift train in the trained blocks).
        self.train_blocks, self.backbone_lr_factor = train_blocks, backbone_lr_factor
        if train_blocks:
            blocks = self.model.backbone.trainable_blocks()
            if not len(blocks) or not self.model.backbone.pretrained:
                raise ValueError("--train-blocks fine-tunes a pretrained extractor's blocks: use --extractor lite")
            if not 1 <= train_blocks <= len(blocks):
                raise ValueError(f"--train-blocks must be 1..{len(blocks)} (the extractor's blocks), got {train_blocks}")
            if last_layer_only or feature_cache is not None:
                raise ValueError("--train-blocks trains the extractor: not with --train-last-layer or --feature-cache")
            self.model.backbone.requires_grad_(False)
            blocks[len(blocks) - train_blocks:].requires_grad_(True)
        # With the extractor frozen its features of augmented crops can be cached once (feature_cache.py),
        # pairs drawn from them as the meta stage draws episodes: a frame's exemplar and another frame's crop.
        if feature_cache is not None and not last_layer_only:
            raise ValueError("--feature-cache in a matching stage needs --train-last-layer (a frozen extractor)")
        self.feature_cache, self.cache_options = feature_cache, cache_options or {}
        if teacher is not None and (feature_cache is not None or search_size != INSTANCE_SIZE):
            raise ValueError(f"--teacher needs the crops themselves at the tracker's {INSTANCE_SIZE} px search size "
                             "(no --feature-cache, no other --search-size)")
        if distill not in ("map", "features", "both"):
            raise ValueError(f"distillation level {distill!r}: map, features or both")
        if distill != "map" and last_layer_only:
            raise ValueError("feature distillation trains conv1-4: not with --train-last-layer")
        self.teacher = NanoTrackTeacher(teacher) if teacher is not None else None
        self.distill_weight, self.distill = distill_weight, distill
        self.distilled = (DistilledMatching(self.model, TEACHER_CHANNELS).to(device)
                          if teacher is not None and distill != "map" else None)

    def trainable(self):
        return self.model if self.distilled is None else self.distilled

    def param_groups(self, lr):
        """The optimiser's parameter groups: with ``train_blocks``, the extractor's trained blocks at
        ``backbone_lr_factor`` times ``lr`` (a network trained whole, the paper's, keeps one learning rate)."""
        trained = [p for p in self.trainable().parameters() if p.requires_grad]
        if not self.train_blocks:
            return [{"params": trained, "lr": lr, "lr_factor": 1.0}]
        backbone = {id(p) for p in self.model.backbone.parameters()}
        return [{"params": [p for p in trained if id(p) not in backbone], "lr": lr, "lr_factor": 1.0},
                {"params": [p for p in trained if id(p) in backbone], "lr": lr * self.backbone_lr_factor,
                 "lr_factor": self.backbone_lr_factor}]

    def load_init(self, path):
        """Warm start from a weight file; MLT-mt's 224 channels may start from MLT's 192 (``widened``), MLT's 192
        from MLT-mt's first 192 (``narrowed``)."""
        network = load_matching(path)
        if network.extractor != self.model.extractor:
            raise ValueError(f"--init {path}: trained on the {network.extractor!r} extractor, this run trains "
                             f"{self.model.extractor!r} (--extractor)")
        if network.out_channels < self.model.out_channels:
            network = network.widened(self.model.out_channels)
        elif network.out_channels > self.model.out_channels:
            network = network.narrowed(self.model.out_channels)
        self.model.load_state_dict(network.state_dict())

    def prepare(self, sources, rank, world):
        if self.feature_cache is None:
            return sources
        return _built_once(rank, world, lambda build: prepare_feature_cache(
            self.feature_cache, sources, self.model, self.device, build=build, **self.cache_options))

    def dataset(self, sources, iterations, batch_size, seed, first_sample):
        if self.feature_cache is not None:
            return CachedEpisodeDataset(sources, iterations, batch_size, num_reg=1, seed=seed, first_sample=first_sample)
        return PairDataset(sources, iterations, batch_size, seed=seed, first_sample=first_sample,
                           search_size=self.search_size, teacher=self.teacher)

    def loss(self, module, batch):
        if self.last_layer_only or self.train_blocks:
            self.model.backbone.eval()  # the backbone normalises with its running statistics, as in tracking
        if "x4" in batch:  # cached extractor features: the last layer, normalisation and correlation only
            logits = module(batch["x4"].float(), batch["z4"].float(), conv4=True)
            return logistic_loss(logits, label_map(batch["centers"], LABEL_RADIUS, logits.shape[-1]))
        as_image = lambda t: t.float().contiguous(memory_format=self.memory_format)  # noqa: E731
        logits = module(as_image(batch["x"]), as_image(batch["z"]))
        logits, projected = logits if isinstance(logits, tuple) else (logits, None)
        loss = logistic_loss(logits, label_map(batch["centers"], LABEL_RADIUS, logits.shape[-1]))
        if "teacher" in batch and self.distill in ("map", "both"):
            loss = loss + self.distill_weight * soft_logistic_loss(logits, batch["teacher"])
        if "teacher_features" in batch and self.distill in ("features", "both"):
            loss = loss + self.distill_weight * feature_distillation_loss(projected, batch["teacher_features"])
        return loss

    def validation_data(self, sources, val_sources, batch_size, count, seed):
        """Fixed batches of plain positive pairs (mild jitter, no hard pairs) from the validation sequences
        and, for the train/validation gap, from the training sources, at the tracker's 255 search crop."""
        def fixed(from_sources):
            if self.feature_cache is not None and from_sources is sources:  # the training sources, cached
                pairs = CachedEpisodeDataset(from_sources, count, batch_size, num_reg=1, seed=seed + 1000)
            else:
                pairs = PairDataset(from_sources, count, batch_size, seed=seed + 1000, sampler=CropSampler(), hard=False)
            return [{k: v.to(self.device) for k, v in pairs[i].items()} for i in range(count)]
        return {"validation": fixed(val_sources), "training": fixed(sources)}

    def validation(self, module, data) -> dict:
        """Eq. (6) in eval mode (batch norm's running statistics, as tracking uses them): validation first."""
        was_training = module.training
        module.eval()
        with torch.no_grad():
            result = {name: float(torch.stack([self.loss(module, b) for b in batches]).mean())
                      for name, batches in data.items()}
        module.train(was_training)
        return {**result, "gap": result["validation"] - result["training"]}

    def export(self, path, suffix=""):
        name = self.export_name[self.model.out_channels].replace(".safetensors", f"{suffix}.safetensors")
        save_weights(path / name, self.model, metadata={"variant": "matching"})


class MetaStage:
    """Eq. (7) on episodes: delta from z_delta (the first M patches), loss on all M' patches z_reg.

    Episodes come either as crops (run through the frozen matching network up to conv4 here) or,
    with ``feature_cache`` (a folder), as conv4 features cached once (see feature_cache.py); the
    rest of the loss is the same code for both.
    """

    export_name = "mlt.safetensors"

    def __init__(self, matching_weights, device, num_delta=8, num_reg=16, feature_cache=None, cache_options=None):
        self.matching = load_matching(matching_weights, BASE_CHANNELS).to(device).eval()
        self.matching.requires_grad_(False)
        self.model = MetaLearner(self.matching.backbone.channels).to(device)
        self.device = device
        self.num_delta, self.num_reg = num_delta, num_reg
        self.feature_cache = feature_cache
        self.cache_options = cache_options or {}
        self.rank, self.world = 0, 1

    def trainable(self):
        return self.model

    def load_init(self, path):
        self.model.load_state_dict(load_weights("mlt", path, self.matching.extractor)[1].state_dict())

    def prepare(self, sources, rank, world):
        """The sources, or with a feature cache their cached features (built by rank 0 when absent)."""
        self.rank, self.world = rank, world  # the validation cache is built once too
        if self.feature_cache is None:
            return sources
        return _built_once(rank, world, lambda build: prepare_feature_cache(
            self.feature_cache, sources, self.matching, self.device, build=build, **self.cache_options))

    def dataset(self, sources, iterations, batch_size, seed, first_sample):
        if self.feature_cache is not None:
            return CachedEpisodeDataset(sources, iterations, batch_size, self.num_reg, seed=seed, first_sample=first_sample)
        return EpisodeDataset(sources, iterations, batch_size, self.num_reg, seed=seed, first_sample=first_sample)

    def conv4(self, batch):
        """(x4, z4): cached features as they are, crops through the frozen backbone."""
        if "x4" in batch:
            return batch["x4"].float(), batch["z4"].float()
        with torch.no_grad():
            return (self.matching.conv4_features(batch["x"].float()).float(),
                    self.matching.conv4_features(batch["z"].float()).float())

    def loss(self, module, batch, adapt=True, per_patch=False):
        """Eq. (7). ``adapt=False``: the same patches through the unadapted network (eq. 1), for validation;
        ``per_patch``: the loss of each (episode, context patch), (B, num_reg), instead of the mean."""
        net = self.matching
        x4, z4 = self.conv4(batch)
        batch_size = x4.shape[0]
        labels = label_map(batch["centers"], LABEL_RADIUS)
        grouped = lambda t: t.view(batch_size, self.num_reg, *t.shape[1:])  # noqa: E731
        delta_z4 = grouped(z4)[:, : self.num_delta].flatten(0, 1)
        delta_labels = grouped(labels)[:, : self.num_delta].flatten(0, 1)
        if not adapt:
            template, search = net.embed(x4), grouped(net.embed(z4))
            logits = torch.cat([net.correlate(template[e : e + 1], search[e]) for e in range(batch_size)])
            losses = logistic_loss(logits, labels, reduction="none").view(batch_size, self.num_reg)
            return losses if per_patch else losses.mean()
        delta = meta_gradient(net, x4, delta_z4, delta_labels)
        w_target, attention = module(delta)
        kernels, bias = net.target_kernels(w_target, x4)  # target channels normalised like bn5's (eq. 4)
        template = net.embed(x4, w_target=kernels, attention=attention, target_bias=bias)
        per_episode = lambda t: t.repeat_interleave(self.num_reg, 0)  # noqa: E731
        search = grouped(net.embed(z4, w_target=per_episode(kernels), attention=per_episode(attention),
                                   target_bias=per_episode(bias)))
        # One plain correlation per episode (its template against its num_reg patches): on CPU about
        # 2.5x faster, backward included, than one grouped convolution with a template copy per patch.
        logits = torch.cat([net.correlate(template[e : e + 1], search[e]) for e in range(batch_size)])
        if per_patch:
            return logistic_loss(logits, labels, reduction="none").view(batch_size, self.num_reg)
        return logistic_loss(logits, labels)

    def validation(self, module, batches) -> dict:
        """Eq. (7) on validation episodes (dropout off): the loss on the M' - M context patches that did not
        give delta (new frames of the target, what tracking needs), adapted and unadapted, and on all M'."""
        was_training = module.training
        module.eval()
        held, held_base, every = [], [], []
        with torch.no_grad():
            for batch in batches:
                adapted = self.loss(module, batch, per_patch=True)
                base = self.loss(module, batch, adapt=False, per_patch=True)
                held.append(adapted[:, self.num_delta :].mean())
                held_base.append(base[:, self.num_delta :].mean())
                every.append(adapted.mean())
        module.train(was_training)
        return {"held_out": float(torch.stack(held).mean()), "held_out_unadapted": float(torch.stack(held_base).mean()),
                "all": float(torch.stack(every).mean())}

    def validation_data(self, sources, val_sources, batch_size, count, seed):
        """Fixed validation episodes: 40 cached frames of each validation sequence, one crop each."""
        options = {**self.cache_options, "frames_per_trajectory": 40, "crops_per_frame": 1}
        cached = _built_once(self.rank, self.world, lambda build: prepare_feature_cache(
            self.feature_cache, val_sources, self.matching, self.device, build=build, **options))
        episodes = CachedEpisodeDataset(cached, count, batch_size, self.num_reg, seed=seed + 1000)
        return [{k: v.to(self.device) for k, v in episodes[i].items()} for i in range(count)]

    def export(self, path, suffix=""):
        save_weights(path / self.export_name.replace(".safetensors", f"{suffix}.safetensors"), self.matching,
                     self.model, metadata={"variant": "mlt"})


MAX_NONFINITE = 5  # non-finite losses in a row that stop a run: it has diverged, skipping more will not help


class TrainingDiverged(RuntimeError):
    """Several steps in a row had a non-finite loss."""


def amp_dtype(device) -> torch.dtype:
    """--amp's autocast dtype: bf16 where the device runs it (fp32's range: no loss scaling needed), else fp16,
    whose gradients need a GradScaler (most of conv1-4's activation gradients fall below fp16's normal range)."""
    if device.type == "cuda":
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # an older torch without the argument
            native = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if native else torch.float16
    return torch.bfloat16


def _autocast(device, dtype):
    """Autocast in ``dtype``, or nothing when it is None (fp32)."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


@contextmanager
def _process_group(device_name):
    """(rank, world size, device) of this process. Under torchrun the process group is started here: gloo
    for CPU training, NCCL for CUDA (``MLT_DIST_BACKEND`` overrides), each process on GPU
    LOCAL_RANK % GPUs, and the group is closed again when training ends."""
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield 0, 1, device
        return
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)  # before the group starts: NCCL binds each process to its GPU
    created = not dist.is_initialized()
    if created:
        backend = os.environ.get("MLT_DIST_BACKEND") or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        yield dist.get_rank(), world, device
    finally:
        if created:
            dist.destroy_process_group()


def _built_once(rank, world, prepare):
    """Rank 0 builds a cache (``prepare(build=True)``), then the other processes read it."""
    result = prepare(build=True) if rank == 0 else None
    if world > 1:
        dist.barrier()
    return result if rank == 0 else prepare(build=False)


def _rng_state(device):
    """This process's RNG states (dropout's and the global generator's), CPU byte tensors."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state, device):
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and device.type == "cuda":
        if isinstance(cuda, list):  # checkpoints written before per-process states: every GPU's state
            torch.cuda.set_rng_state_all(cuda)
        else:
            torch.cuda.set_rng_state(cuda, device)


def _gathered(value, world):
    """``value`` of every process, in rank order (collective: every rank calls it)."""
    if world == 1:
        return [value]
    values = [None] * world
    dist.all_gather_object(values, value)
    return values


def train(stage_name, sources, out, iterations, batch_size=8, lr=1e-4, device=None, amp=False, workers=2,
          seed=0, resume=False, checkpoint_every=500, matching_weights=None, threads=None, feature_cache=None,
          cache_frames=40, cache_crops=2, crop_cache=None, prepare_only=False, weight_decay=0.0, still_crops=8,
          max_stills=200, val_sources=None, val_every=100, val_batches=10, init=None,
          search_size=INSTANCE_SIZE, last_layer_only=False, extractor="paper", teacher=None, distill_weight=1.0,
          distill="map", train_blocks=0, backbone_lr_factor=0.1, log_every=None):
    """Run (or resume) one training stage; returns the final loss. ``stage_name``: backbone | matching | mt | meta | box.

    feature_cache: meta stage, and matching stages with ``last_layer_only`` (a frozen extractor), a folder
        for the extractor's feature cache (built once when absent);
        ``cache_frames`` frames per trajectory at most, ``cache_crops`` augmented search crops per frame;
        still images (coco, tinyimagenet sources): ``max_stills`` objects each with ``still_crops`` heavily augmented
        crops (every other one with a same-class look-alike pasted in, where labelled).
    weight_decay: L2 penalty of Adam (regularisation of the meta-learner).
    val_sources: validation sources: every ``val_every`` steps the stage's losses on ``val_batches`` fixed
        validation batches go to ``val.csv`` (meta: episodes of 40 cached frames per trajectory, held-out
        loss first; matching: plain pairs, validation and training loss and their gap), and the best state
        so far (lowest first loss) is kept as ``best.pt`` and exported with a ``_best`` suffix (early stopping
        chosen by validation).
    search_size: matching stages, the search crop's side for training (255; smaller trains faster).
    last_layer_only: matching stages, train w5, bn5 and the response scale and bias on conv1-4 as loaded by
        ``init`` (or the resumed checkpoint; a pretrained extractor: as its package gives it), which stay frozen.
    extractor: matching stages, the feature extractor (networks/extractors.py: "paper" or "lite"); the meta
        stage takes the one its matching weights name.
    teacher: matching stages, NanoTrack v2's folder (two ONNX files): terms beside eq. (6) weighted by
        ``distill_weight`` at the levels of ``distill`` (map, features or both; distillation).
    crop_cache: a folder for the pre-cropped frames (see crop_cache.py), built once when absent.
    init: warm start from a weight file (the trained network only; the optimiser starts fresh). The
        weights committed to the repository survive a lost machine, a checkpoint on its disk does not.
    prepare_only: build the caches and return without training (nan).
    amp: autocast, bf16 where the device has it, else fp16 with a GradScaler (``amp_dtype``). Any step whose
        loss or gradients are not finite is skipped (the log says which), and ``MAX_NONFINITE`` in a row stop
        the run with ``TrainingDiverged``.
    log_every: a log.csv row (the loss averaged over these steps and every process) every N steps: reading
        the loss waits for the device, so on CUDA not every step (default 1 on CPU, 20 on CUDA).
    Under torchrun (WORLD_SIZE > 1): DistributedDataParallel, see ``_process_group``; ``OUT/summary.json``
    gets steps/s and the share of time spent waiting for data.
    """
    with _process_group(device) as (rank, world, device):
        return _train(stage_name, sources, out, iterations, batch_size, lr, device, amp, workers, seed, resume,
                      checkpoint_every, matching_weights, threads, feature_cache, cache_frames, cache_crops,
                      crop_cache, prepare_only, weight_decay, still_crops, max_stills, val_sources, val_every,
                      val_batches, init, search_size, last_layer_only, extractor, teacher, distill_weight, distill,
                      train_blocks, backbone_lr_factor, log_every, rank, world)


def _train(stage_name, sources, out, iterations, batch_size, lr, device, amp, workers, seed, resume,
           checkpoint_every, matching_weights, threads, feature_cache, cache_frames, cache_crops, crop_cache,
           prepare_only, weight_decay, still_crops, max_stills, val_sources, val_every, val_batches, init,
           search_size, last_layer_only, extractor, teacher, distill_weight, distill, train_blocks,
           backbone_lr_factor, log_every, rank, world):
    if threads:
        torch.set_num_threads(threads)
    if batch_size % world:
        raise ValueError(f"batch size {batch_size} is not divisible by the {world} processes")
    torch.manual_seed(seed)  # the same initial network in every process (a feature cache is keyed by it)
    if last_layer_only and not (init or resume or EXTRACTORS[extractor].pretrained):
        raise ValueError("--train-last-layer trains on a trained backbone: give --init WEIGHTS (or --resume)")
    if train_blocks and stage_name not in ("matching", "mt"):
        raise ValueError("--train-blocks is for the matching stages (matching, mt)")
    if teacher is not None and stage_name not in ("matching", "mt"):
        raise ValueError("--teacher is for the matching stages (matching, mt)")
    if stage_name == "meta":
        if last_layer_only:
            raise ValueError("--train-last-layer is for the matching stages (the meta stage trains the meta-learner only)")
        if matching_weights is None:
            raise ValueError("meta-learner training needs --matching-weights (the matching stage's export)")
        cache_options = dict(frames_per_trajectory=cache_frames, crops_per_frame=cache_crops, seed=seed,
                             workers=workers, amp=amp, still_crops=still_crops, max_stills=max_stills)
        stage = MetaStage(matching_weights, device, feature_cache=feature_cache, cache_options=cache_options)
    elif stage_name == "backbone":
        if extractor != "paper":
            raise ValueError("the backbone stage trains the paper's conv1-4 (--extractor paper)")
        if feature_cache is not None or last_layer_only:
            raise ValueError("--feature-cache and --train-last-layer are not for the backbone stage")
        stage = BackboneStage(device)
    elif stage_name == "box":
        if feature_cache is not None or last_layer_only or teacher is not None or train_blocks:
            raise ValueError("the box stage trains the box head alone on a frozen extractor: no --feature-cache, "
                             "--train-last-layer, --teacher or --train-blocks")
        stage = BoxStage(extractor, device)
    elif stage_name in ("matching", "mt"):
        cache_options = dict(frames_per_trajectory=cache_frames, crops_per_frame=cache_crops, seed=seed,
                             workers=workers, amp=amp, still_crops=still_crops, max_stills=max_stills)
        stage = MatchingStage(BASE_CHANNELS if stage_name == "matching" else ADAPTED_CHANNELS, device, search_size,
                              last_layer_only=last_layer_only, extractor=extractor, feature_cache=feature_cache,
                              cache_options=cache_options, teacher=teacher, distill_weight=distill_weight,
                              distill=distill, train_blocks=train_blocks, backbone_lr_factor=backbone_lr_factor)
    else:
        raise ValueError(f"unknown training stage {stage_name!r}: backbone, matching, mt, meta or box")

    if crop_cache is not None:
        sources = _built_once(rank, world, lambda build: prepare_crop_cache(crop_cache, sources, workers=workers, build=build))
    sources = stage.prepare(sources, rank, world)
    val_data = stage.validation_data(sources, val_sources, batch_size, val_batches, seed) if val_sources else None
    if prepare_only:
        return float("nan")

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    model = stage.trainable()
    groups = stage.param_groups(lr) if hasattr(stage, "param_groups") else \
        [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr, "lr_factor": 1.0}]
    # Fused Adam: a step whose gradients are not finite is skipped on the device (``found_inf``), no host sync.
    optimizer = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, fused=True)
    dtype = amp_dtype(device) if amp else None
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    start = 0
    if init and not resume:
        stage.load_init(init)
    if resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        # On the CPU: the RNG states must stay CPU byte tensors; load_state_dict moves the model's and the
        # optimiser's tensors to their parameters' device.
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        if state["stage"] != stage_name:
            raise ValueError(f"{checkpoint_path} is a {state['stage']!r} checkpoint, not {stage_name!r}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for group in optimizer.param_groups:  # --lr on a resumed run: a step decay of the learning rate
            group["lr"] = lr * group.get("lr_factor", 1.0)
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start = state["iteration"]
        per_rank = state.get("rng_ranks") or [state["rng"]]
        if len(per_rank) == world:
            _set_rng_state(per_rank[rank], device)
        else:  # another number of processes than the checkpoint's: fresh streams, still one per process
            tqdm.write(f"--resume: checkpoint of {len(per_rank)} process(es), run of {world}: RNG re-seeded")
            torch.manual_seed(seed + rank + 1_000_003 * start)
    else:
        torch.manual_seed(seed + rank)  # from here on each process draws its own dropout masks
    module = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    model.train()
    trained = [p for group in optimizer.param_groups for p in group["params"]]

    local = batch_size // world
    dataset = stage.dataset(sources, iterations, local, seed, first_sample=rank * local)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=range(start, iterations), num_workers=workers,
        persistent_workers=False, prefetch_factor=2 if workers else None, pin_memory=device.type == "cuda",
        # Its own generator: starting the workers must not draw from the global RNG (dropout), or a
        # resumed run would see other dropout masks than an uninterrupted one.
        generator=torch.Generator().manual_seed(seed),
    )
    log_every = log_every or (1 if device.type == "cpu" else 20)
    log_file = open(out / "log.csv", "a", newline="") if rank == 0 else None
    log = csv.writer(log_file) if log_file else None
    if log and start == 0:
        log.writerow(["iteration", "loss", "lr", "seconds"])
    board = _tensorboard(out) if rank == 0 else None
    best_val = float("inf")
    if val_data is not None and rank == 0 and resume and (out / "val.csv").is_file():
        rows = list(csv.reader(open(out / "val.csv")))[1:]
        best_val = min((float(r[1]) for r in rows), default=float("inf"))

    def validate(iteration):
        """The stage's validation losses to val.csv; the first one decides the best state (early stopping)."""
        nonlocal best_val
        if val_data is None or rank:
            return
        result = stage.validation(model, val_data)
        new_file = not (out / "val.csv").is_file()
        with open(out / "val.csv", "a", newline="") as f:
            writer = csv.writer(f)
            if new_file:
                writer.writerow(["iteration", *result])
            writer.writerow([iteration, *(f"{v:.6f}" for v in result.values())])
        tqdm.write(f"validation @ {iteration}: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
        criterion = next(iter(result.values()))
        if criterion < best_val:
            best_val = criterion
            torch.save({"stage": stage_name, "model": model.state_dict(), "iteration": iteration, "validation": result},
                       out / "best.pt")
            stage.export(out, suffix="_best")

    def save(iteration):
        rng = _gathered(_rng_state(device), world)  # every process's own RNG, for an exact resume of each
        if rank:
            return
        state = {"stage": stage_name, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "iteration": iteration, "rng": rng[0], "rng_ranks": rng}
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        torch.save(state, checkpoint_path.with_suffix(".tmp"))
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)
        stage.export(out)
        log_file.flush()

    window, nonfinite_run, skipped = [], 0, 0  # the losses since the last log row, on the device

    def write_log(iteration):
        """One log row: the mean finite loss of the window's steps over every process (one host sync)."""
        nonlocal window, nonfinite_run, skipped, loss_value
        if not window:
            return
        losses = torch.stack(window).tolist()
        first = iteration - len(losses) + 1
        finite = [v for v in losses if math.isfinite(v)]
        bad = [first + n for n, v in enumerate(losses) if not math.isfinite(v)]
        window = []
        for v in losses:
            nonfinite_run = 0 if math.isfinite(v) else nonfinite_run + 1
        skipped += len(bad)
        if bad:
            tqdm.write(f"iteration(s) {', '.join(map(str, bad))}: non-finite loss, step skipped")
        if nonfinite_run >= MAX_NONFINITE:
            raise TrainingDiverged(f"{nonfinite_run} steps in a row had a non-finite loss (the last at iteration "
                                   f"{iteration}): training stopped. Try a lower --lr, or without --amp; "
                                   f"{out / 'checkpoint.pt'} holds the last checkpoint")
        loss_value = sum(finite) / len(finite) if finite else float("nan")
        if log:
            log.writerow([iteration, f"{loss_value:.6f}", lr, f"{time.time() - started:.1f}"])
        if board:
            board.add_scalar(f"{stage_name}/loss", loss_value, iteration)
        progress.set_postfix(loss=f"{loss_value:.4f}")

    if amp and device.type == "cpu" and not cpu_has_bf16():  # checked once, not per step
        warnings.warn("--amp: this CPU has no native bf16 (AVX512-BF16/AMX), where bf16 autocast is emulated "
                      "and several times slower than fp32; drop --amp")
    progress = tqdm(total=iterations, initial=start, disable=rank != 0, desc=f"train {stage_name}", unit="it")
    started, loss_value, data_seconds = time.time(), float("nan"), 0.0
    iteration = start
    if val_data is not None and start == 0:
        validate(0)  # the starting network: the reference for what training buys
    batches = iter(loader)
    for iteration in range(start, iterations):
        tic = time.perf_counter()
        batch = next(batches)
        data_seconds += time.perf_counter() - tic
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with _autocast(device, dtype):
            loss = stage.loss(module, batch)
        optimizer.zero_grad(set_to_none=True)
        (loss if scaler is None else scaler.scale(loss)).backward()
        mean = loss.detach().float().clone()
        if world > 1:  # the logged loss is every process's (and a non-finite one on any rank skips the step)
            dist.all_reduce(mean)
            mean = mean / world
        window.append(mean)
        if scaler is not None:  # skips the steps whose scaled gradients overflowed, and adapts the scale
            scaler.step(optimizer)
            scaler.update()
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in trained if p.grad is not None])
            optimizer.found_inf = (~(torch.isfinite(mean) & torch.isfinite(norm))).float()
            optimizer.step()
        progress.update()
        if (iteration + 1) % log_every == 0:
            write_log(iteration + 1)
        if (iteration + 1) % checkpoint_every == 0:
            write_log(iteration + 1)
            save(iteration + 1)
        if val_data is not None and (iteration + 1) % val_every == 0:
            validate(iteration + 1)
        iteration += 1
    write_log(iteration)
    save(iteration)
    progress.close()
    if log_file:
        log_file.close()
        seconds, steps = time.time() - started, iteration - start
        summary = {"stage": stage_name, "steps": steps, "seconds": seconds, "steps_per_s": steps / max(seconds, 1e-9),
                   "data_wait_share": data_seconds / max(seconds, 1e-9), "skipped_steps": skipped,
                   "final_loss": loss_value, "processes": world, "device": str(device),
                   "amp": str(dtype).replace("torch.", "") if dtype else None}
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return loss_value


def _tensorboard(out):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # TensorBoard is optional: log.csv always has the losses
        return None
    return SummaryWriter(str(out / "tensorboard"))
