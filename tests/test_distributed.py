"""Training under DistributedDataParallel, resume, and mixed precision, on the CPU.

Each stage runs in 2 gloo processes through ``train()`` itself (the environment torchrun gives, set by
hand), each process on its own part of every batch, and is compared with one process on the whole batch.
Under DDP batch norm normalises each process's part alone, so the one-process reference runs the same
``train()`` with the stage's loss split the same way and averaged (which is what DDP's averaged gradient
is). Data is generated: a few frames of a moving square, labelled stills for the backbone stage.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import labelled_source

from mlt_plugin.demo import write_square_sequence
from mlt_plugin.networks import MatchingNetwork, save_weights
from mlt_plugin.training import trainer
from mlt_plugin.training.datasets import load_source
from mlt_plugin.training.feature_cache import CachedEpisodeDataset, prepare_feature_cache
from mlt_plugin.training.sampling import ClassificationDataset, PairDataset

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
WORLD = 2
STEPS = 3

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Sources and weight files shared by this module's runs (the feature caches are built once here too)."""
    root = tmp_path_factory.mktemp("distributed")
    torch.manual_seed(0)
    weights = root / "matching.safetensors"
    save_weights(weights, MatchingNetwork())
    return {"root": root, "videos": write_square_sequence(root / "videos"), "val": write_square_sequence(root / "val", "val", seed=1),
            "weights": weights}


def _stage_options(stage, data):
    """train() options of each stage as the tests run it: tiny batches, small crops, a few cached frames."""
    fc = {"feature_cache": str(data["root"] / "fc"), "cache_frames": 3, "cache_crops": 1, "workers": 0}
    return {
        "backbone": {"stage_name": "backbone"},
        "matching": {"stage_name": "matching", "search_size": 135},
        "matching_last_layer": {"stage_name": "matching", "search_size": 135, "last_layer_only": True,
                                "init": str(data["weights"])},
        "matching_last_layer_cache": {"stage_name": "matching", "last_layer_only": True, "init": str(data["weights"]),
                                      **fc},
        "mt": {"stage_name": "mt", "search_size": 135},
        "meta": {"stage_name": "meta", "matching_weights": str(data["weights"]), **fc},
    }[stage]


def _sources(stage, data):
    if stage == "backbone":
        return [labelled_source(count=8)]
    return [load_source("seq", str(data["videos"]))]


def _no_dropout():
    """Dropout off (the meta-learner's): the one-process reference cannot draw each process's masks."""
    torch.nn.Dropout.forward = lambda self, x: x


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process(rank, world, port, job, result_dir, dropout):
    """One process of a torchrun-like run: train() as torchrun starts it, then what each rank holds."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    os.environ.pop("MLT_DIST_BACKEND", None)
    torch.set_num_threads(1)
    if not dropout:
        _no_dropout()
    wrapped, cache_calls = [], []
    ddp = torch.nn.parallel.DistributedDataParallel

    class Recorded(ddp):  # the module this rank trained, read after train() returns
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            wrapped.append(self)

    torch.nn.parallel.DistributedDataParallel = Recorded
    prepare = trainer.prepare_feature_cache

    def recorded_prepare(*args, **kwargs):
        cache_calls.append(kwargs.get("build", True))
        return prepare(*args, **kwargs)

    trainer.prepare_feature_cache = recorded_prepare
    trainer.train(**job)
    torch.save({"params": {k: v.detach().clone() for k, v in wrapped[-1].module.named_parameters()},
                "rng": torch.get_rng_state(), "cache_builds": cache_calls,
                "group_open": torch.distributed.is_initialized()}, Path(result_dir) / f"rank{rank}.pt")


def _spawn(job, result_dir, dropout=False):
    result_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_process, args=(WORLD, _free_port(), job, str(result_dir), dropout), nprocs=WORLD)
    return [torch.load(result_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _split_loss(monkeypatch, stage_class):
    """The stage's loss as the mean of its loss on each process's part of the batch (DDP's averaged gradient)."""
    original = stage_class.loss

    def split(self, module, batch, **kwargs):
        parts = [{k: v.chunk(WORLD)[i] for k, v in batch.items()} for i in range(WORLD)]
        return torch.stack([original(self, module, part, **kwargs) for part in parts]).mean()

    monkeypatch.setattr(stage_class, "loss", split)


STAGE_CLASSES = {"backbone": trainer.BackboneStage, "matching": trainer.MatchingStage, "mt": trainer.MatchingStage,
                 "meta": trainer.MetaStage}


def _log_losses(out):
    return [float(line.split(",")[1]) for line in (out / "log.csv").read_text().splitlines()[1:]]


@pytest.mark.parametrize("stage", ["backbone", "matching", "matching_last_layer", "matching_last_layer_cache", "mt",
                                   "meta"])
def test_two_processes_train_as_one_process_on_the_whole_batch(stage, data, tmp_path, monkeypatch):
    """Every stage under DDP: after a few steps both processes hold the same parameters, equal to one process
    trained on the union of their batches; the logged loss is the mean over both processes; the process
    group is closed again; each process has its own RNG stream; shared caches are built by rank 0 alone."""
    options = _stage_options(stage, data)
    job = {**options, "sources": _sources(stage, data), "iterations": STEPS, "batch_size": 4, "lr": 1e-3,
           "device": "cpu", "workers": 0, "threads": 1, "checkpoint_every": 100, "out": str(tmp_path / "ddp")}
    if stage == "meta":  # its validation episodes come from a feature cache of their own, built once too
        job.update(val_sources=[load_source("seq", str(data["val"]))], val_every=100, val_batches=1)
    ranks = _spawn(job, tmp_path / "ranks")

    for key, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][key]), f"{key} differs between the processes"
    assert not any(r["group_open"] for r in ranks), "the process group was left open"
    assert not torch.equal(ranks[0]["rng"], ranks[1]["rng"]), "both processes drew the same random numbers"
    if "feature_cache" in options:
        assert ranks[1]["cache_builds"] and not any(ranks[1]["cache_builds"]), "rank 1 built a shared cache"

    _no_dropout_here(monkeypatch)
    _split_loss(monkeypatch, STAGE_CLASSES[options["stage_name"]])
    single = {**job, "out": str(tmp_path / "single"), "val_sources": None}
    trainer.train(**single)
    reference = torch.load(tmp_path / "single" / "checkpoint.pt", weights_only=False)["model"]
    for key, value in ranks[0]["params"].items():
        moved = (reference[key] - value).abs().max()
        # Adam moves each weight by up to lr per step: a process training alone would be off by ~1e-3.
        assert moved < 1e-5, f"{key}: {float(moved):.2e} from the one-process run"
    torch.testing.assert_close(_log_losses(tmp_path / "ddp"), _log_losses(tmp_path / "single"), rtol=1e-4, atol=1e-5)


def _no_dropout_here(monkeypatch):
    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)


def test_resume_restores_each_processs_rng(data, tmp_path):
    """Meta stage with dropout, 2 processes: 4 steps at once, or 2 then --resume to 4, end in the same state,
    each process with its own RNG stream back (its own dropout masks)."""
    job = {**_stage_options("meta", data), "sources": _sources("meta", data), "batch_size": 2, "device": "cpu",
           "threads": 1, "checkpoint_every": 100}
    whole = _spawn({**job, "iterations": 4, "out": str(tmp_path / "whole")}, tmp_path / "w", dropout=True)
    _spawn({**job, "iterations": 2, "out": str(tmp_path / "halves")}, tmp_path / "h1", dropout=True)
    halves = _spawn({**job, "iterations": 4, "out": str(tmp_path / "halves"), "resume": True}, tmp_path / "h2",
                    dropout=True)
    assert not torch.equal(whole[0]["rng"], whole[1]["rng"])
    for rank in range(WORLD):
        assert torch.equal(whole[rank]["rng"], halves[rank]["rng"]), f"rank {rank}'s RNG after resume"
        for key, value in whole[rank]["params"].items():
            assert torch.equal(value, halves[rank]["params"][key]), key
    assert len(torch.load(tmp_path / "halves" / "checkpoint.pt", weights_only=False)["rng_ranks"]) == WORLD


def test_resume_from_a_checkpoint_loaded_as_on_a_gpu(data, tmp_path, monkeypatch):
    """A checkpoint loaded onto the training device (a GPU) puts the RNG state there, where torch.set_rng_state
    refuses it. Stand-in for the GPU: every load that is not mapped to the CPU by name lands on "meta"."""
    real_load = torch.load

    def load_as_on_a_gpu(f, map_location=None, **kwargs):
        if map_location != "cpu" or not isinstance(map_location, str):
            map_location = "meta"
        return real_load(f, map_location=map_location, **kwargs)

    job = {**_stage_options("matching", data), "sources": _sources("matching", data), "batch_size": 2,
           "device": "cpu", "workers": 0, "threads": 1}
    trainer.train(**job, iterations=3, out=tmp_path / "whole")
    trainer.train(**job, iterations=2, out=tmp_path / "halves")
    monkeypatch.setattr(trainer.torch, "load", load_as_on_a_gpu)
    trainer.train(**job, iterations=3, out=tmp_path / "halves", resume=True)
    monkeypatch.undo()
    whole, halves = (torch.load(tmp_path / n / "checkpoint.pt", weights_only=False) for n in ("whole", "halves"))
    assert halves["rng"]["torch"].device.type == "cpu" and halves["rng"]["torch"].dtype == torch.uint8
    for key, value in whole["model"].items():
        assert torch.equal(value, halves["model"][key]), key


class _Started(Exception):
    pass


@pytest.mark.parametrize("device, env, expected", [
    ("cpu", {}, ("gloo", None)),  # --device cpu on a GPU machine: gloo, whatever CUDA there is
    ("cuda", {"LOCAL_RANK": "3"}, ("nccl", "cuda:1")),  # 4 processes per node on 2 GPUs: GPU 3 % 2
    ("cpu", {"MLT_DIST_BACKEND": "mpi"}, ("mpi", None)),
])
def test_process_group_follows_the_device(device, env, expected, data, monkeypatch):
    """As if on a 2-GPU machine: the backend follows --device, the GPU is LOCAL_RANK % GPUs and set before the
    group starts (whose device_id it is)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", str(d))))

    def init(backend=None, **kwargs):
        calls.append(("init", backend, str(kwargs["device_id"]) if kwargs.get("device_id") is not None else None))
        raise _Started

    monkeypatch.setattr(torch.distributed, "init_process_group", init)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    for key, value in {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "0", **env}.items():
        monkeypatch.setenv(key, value)
    if "MLT_DIST_BACKEND" not in env:
        monkeypatch.delenv("MLT_DIST_BACKEND", raising=False)
    with pytest.raises(_Started):
        trainer.train("matching", _sources("matching", data), data["root"] / "never", 1, batch_size=4, device=device)
    assert calls[-1] == ("init", *expected)
    if expected[1]:
        assert calls[0] == ("set_device", expected[1])  # before the group starts


def _one_batch(stage, data):
    """(stage object, one training batch) of each stage, built as train() builds them."""
    torch.manual_seed(0)
    options = _stage_options(stage, data)
    sources = _sources(stage, data)
    if stage == "backbone":
        obj = trainer.BackboneStage(CPU)
        obj.prepare(sources, 0, 1)
        return obj, ClassificationDataset(sources, obj.classes, 1, 4)[0]
    if stage == "meta":
        obj = trainer.MetaStage(options["matching_weights"], CPU)
    else:
        channels = 224 if stage == "mt" else 192
        obj = trainer.MatchingStage(channels, CPU, options.get("search_size", 255),
                                    last_layer_only=options.get("last_layer_only", False),
                                    feature_cache=options.get("feature_cache"))
        if "init" in options:
            obj.load_init(options["init"])
    if "feature_cache" in options:
        net = obj.matching if stage == "meta" else obj.model
        cached = prepare_feature_cache(options["feature_cache"], sources, net, CPU, frames_per_trajectory=3,
                                       crops_per_frame=1, workers=0)
        return obj, CachedEpisodeDataset(cached, 1, 2, num_reg=16 if stage == "meta" else 1)[0]
    return obj, PairDataset(sources, 1, 4, search_size=obj.search_size)[0]


@pytest.mark.parametrize("stage", ["backbone", "matching", "matching_last_layer_cache", "mt", "meta"])
def test_bf16_autocast_gradients_follow_fp32(stage, data):
    """--amp on a CPU (and on GPUs with bf16): finite loss and gradients within cosine 0.99 of fp32's."""
    assert trainer.amp_dtype(CPU) == torch.bfloat16
    obj, batch = _one_batch(stage, data)
    model = obj.trainable().train()
    _no_dropout_model(model)
    gradients = []
    for dtype in (None, torch.bfloat16):
        model.zero_grad()
        with trainer._autocast(CPU, dtype):
            loss = obj.loss(model, batch)
        loss.backward()
        assert torch.isfinite(loss)
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    fp32, bf16 = gradients
    assert torch.isfinite(bf16).all()
    assert torch.nn.functional.cosine_similarity(fp32, bf16, dim=0) > 0.99


def _no_dropout_model(model):
    model.apply(lambda m: m.eval() if isinstance(m, torch.nn.Dropout) else None)


def test_fp16_autocast_uses_a_grad_scaler(data, tmp_path, monkeypatch):
    """Where the device has no bf16 --amp is fp16, whose gradients underflow without loss scaling: the run
    scales them, its scale is in the checkpoint, and the losses stay finite."""
    monkeypatch.setattr(trainer, "amp_dtype", lambda device: torch.float16)
    job = {**_stage_options("matching", data), "sources": _sources("matching", data), "batch_size": 2,
           "device": "cpu", "workers": 0, "threads": 1, "amp": True}
    trainer.train(**job, iterations=2, out=tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["scaler"]["scale"] > 0
    assert np.isfinite(_log_losses(tmp_path / "run")).all()
    trainer.train(**job, iterations=3, out=tmp_path / "run", resume=True)  # the scale comes back with the rest
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["amp"] == "float16"


def _nan_loss_at(monkeypatch, bad_calls):
    original, calls = trainer.MatchingStage.loss, []

    def loss(self, module, batch, **kwargs):
        calls.append(1)
        value = original(self, module, batch, **kwargs)
        return value * float("nan") if len(calls) in bad_calls else value

    monkeypatch.setattr(trainer.MatchingStage, "loss", loss)


def test_a_non_finite_loss_skips_its_step(data, tmp_path, monkeypatch, capsys):
    _nan_loss_at(monkeypatch, {2})
    job = {**_stage_options("matching", data), "sources": _sources("matching", data), "batch_size": 2,
           "device": "cpu", "workers": 0, "threads": 1}
    trainer.train(**job, iterations=4, out=tmp_path / "run")
    assert "iteration(s) 2: non-finite loss, step skipped" in capsys.readouterr().out
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {3.0}  # 3 of 4 steps taken
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["skipped_steps"] == 1


def test_non_finite_losses_in_a_row_stop_the_run(data, tmp_path, monkeypatch):
    _nan_loss_at(monkeypatch, set(range(1, 100)))
    job = {**_stage_options("matching", data), "sources": _sources("matching", data), "batch_size": 2,
           "device": "cpu", "workers": 0, "threads": 1}
    with pytest.raises(trainer.TrainingDiverged, match="5 steps in a row had a non-finite loss"):
        trainer.train(**job, iterations=20, out=tmp_path / "run")


def test_torchrun_trains_through_the_cli_on_cpu(data, tmp_path):
    """`torchrun --nproc_per_node 2 -m mlt_plugin.cli train ... --device cpu`: gloo whatever GPUs the machine
    has, a checkpoint with both processes' RNG states, a log of the mean loss."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "MLT_DIST_BACKEND"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mlt_plugin.cli", "train", "matching", "--source", f"seq:{data['videos']}", "--out", str(out),
               "--iterations", "2", "--batch-size", "4", "--search-size", "135", "--workers", "0", "--threads", "1",
               "--device", "cpu"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert state["iteration"] == 2 and len(state["rng_ranks"]) == 2
    assert len(_log_losses(out)) == 2 and np.isfinite(_log_losses(out)).all()
    assert (out / "matching.safetensors").is_file()

