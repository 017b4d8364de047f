"""Weight files: safetensors, fp16 on disk, loaded into the run dtype. Errors name the file."""
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mlt_plugin.networks.matching import ADAPTED_CHANNELS, BASE_CHANNELS, MatchingNetwork
from mlt_plugin.networks.meta_learner import MetaLearner

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# Variant -> shipped file. "mlt": matching network (192 ch) + meta-learner; "mt": 224-channel matching network.
DEFAULT_FILES = {"mlt": WEIGHTS_DIR / "mlt.safetensors", "mt": WEIGHTS_DIR / "mlt_mt.safetensors"}


class UntrainedWeightsWarning(UserWarning):
    """Raised as a warning when no trained weight file is found and random weights are used."""


def build_networks(variant: str):
    """Fresh (untrained) networks for a variant: (matching, meta_learner or None)."""
    if variant == "mlt":
        return MatchingNetwork(BASE_CHANNELS), MetaLearner()
    if variant == "mt":
        return MatchingNetwork(ADAPTED_CHANNELS), None
    raise ValueError(f"unknown network variant {variant!r}: expected 'mlt' or 'mt'")


def save_weights(path, matching, meta_learner=None, metadata=None):
    """Write fp16 safetensors with keys 'matching.*' (and 'meta.*')."""
    tensors = {f"matching.{k}": v for k, v in matching.state_dict().items()}
    if meta_learner is not None:
        tensors.update({f"meta.{k}": v for k, v in meta_learner.state_dict().items()})
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous().cpu() for k, v in tensors.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    tmp.replace(path)


def _load_into(module, tensors, prefix, path):
    state = module.state_dict()
    found = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    missing = sorted(set(state) - set(found))
    unexpected = sorted(set(found) - set(state))
    if missing or unexpected:
        raise ValueError(
            f"weights file {path} does not match the {type(module).__name__}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, expected in state.items():
        if found[key].shape != expected.shape:
            raise ValueError(
                f"weights file {path}: tensor {prefix}{key} has shape {tuple(found[key].shape)}, "
                f"expected {tuple(expected.shape)} (wrong variant or a different network?)"
            )
        # NaN/inf weights (a diverged training run) would give NaN responses and meaningless boxes.
        if found[key].is_floating_point() and not torch.isfinite(found[key]).all():
            raise ValueError(f"weights file {path}: tensor {prefix}{key} has NaN or infinite values (diverged training?)")
    module.load_state_dict({k: v.to(state[k].dtype) for k, v in found.items()})


def _read(path):
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"weights file {path} is a directory: give the .safetensors file in it")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"weights file {path} is not a readable safetensors file: {err}") from err


def load_matching(path, channels: int) -> MatchingNetwork:
    """Only the matching network from a weight file (e.g. the matching stage's export)."""
    matching = MatchingNetwork(channels)
    _load_into(matching, _read(path), "matching.", path)
    return matching


def load_weights(variant: str, path=None):
    """Networks for ``variant`` with weights from ``path`` (default: the shipped file).

    A missing default file gives random weights and an ``UntrainedWeightsWarning``; an explicit path
    that is missing, corrupt or of the wrong shape raises with the file's name.
    """
    matching, meta_learner = build_networks(variant)
    default = path is None
    path = Path(DEFAULT_FILES[variant] if default else path)
    if default and not path.is_file():
        warnings.warn(
            f"no trained weights at {path}: MLT is running with UNTRAINED random weights, "
            "its boxes are meaningless (train with `mlt train`, or pass params.weights)",
            UntrainedWeightsWarning,
            stacklevel=3,
        )
        return matching, meta_learner
    tensors = _read(path)
    _load_into(matching, tensors, "matching.", path)
    if meta_learner is not None:
        _load_into(meta_learner, tensors, "meta.", path)
    return matching, meta_learner
