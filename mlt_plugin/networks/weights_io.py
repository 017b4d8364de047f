"""Weight files: safetensors, loaded into the run dtype. Errors name the file.

On disk the matching network is fp16. The meta-learner's large fully connected weights (its first layer
alone is 49,152 x 512) are int8 with one fp32 scale per row (symmetric, scale = max |row| / 127): a
quarter of fp32's size, dequantised on load. Per-row rounding error is at most 0.4 % of the row's
largest weight.
"""
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mlt_plugin.networks.box_head import BoxHead
from mlt_plugin.networks.extractors import EXTRACTORS, build_extractor
from mlt_plugin.networks.int8 import read_calibration
from mlt_plugin.networks.matching import ADAPTED_CHANNELS, BASE_CHANNELS, MatchingNetwork
from mlt_plugin.networks.meta_learner import MetaLearner

# Stored as int8 + per-row scale: meta-learner 2-D weights with at least this many values.
INT8_MIN_VALUES = 1 << 20
INT8_SUFFIX, SCALE_SUFFIX = ".int8", ".row_scale"

# Constants that weight files written before the extractor seam hold; not weights, ignored on load.
LEGACY_KEYS = {"matching.pixel_mean", "matching.pixel_std"}


class UntrainedWeightsWarning(UserWarning):
    """Raised as a warning when no trained weight file is found and random weights are used."""


def default_file(extractor: str, variant: str):
    """The shipped weight file of ``variant`` ("mlt": 192 channels + meta-learner, "mt": 224 channels) on
    ``extractor``, as the extractor declares it (``default_files``); None where it declares none."""
    return EXTRACTORS[extractor].default_files.get(variant)


def build_networks(variant: str, extractor: str = "paper"):
    """Fresh (untrained) networks for a variant: (matching, meta_learner or None); a pretrained extractor
    comes with its package's weights."""
    if variant == "mlt":
        matching = MatchingNetwork(BASE_CHANNELS, extractor)
        return matching, MetaLearner(matching.backbone.channels)
    if variant == "mt":
        return MatchingNetwork(ADAPTED_CHANNELS, extractor), None
    raise ValueError(f"unknown network variant {variant!r}: expected 'mlt' or 'mt'")


def _encode(name, tensor):
    """{key: stored tensor} for one state-dict entry: int8 rows + scales, fp16, or as it is."""
    tensor = tensor.detach().cpu()
    if not tensor.is_floating_point():
        return {name: tensor.contiguous()}
    if name.startswith("meta.") and tensor.dim() == 2 and tensor.numel() >= INT8_MIN_VALUES:
        scale = tensor.float().abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
        rows = torch.round(tensor.float() / scale).clamp(-127, 127).to(torch.int8)
        return {name + INT8_SUFFIX: rows.contiguous(), name + SCALE_SUFFIX: scale.contiguous()}
    return {name: tensor.half().contiguous()}


def _decode(tensors):
    """Inverse of _encode: int8 rows times their scales, back to one float tensor per name."""
    decoded = {}
    for key, value in tensors.items():
        if key.endswith(INT8_SUFFIX):
            name = key[: -len(INT8_SUFFIX)]
            decoded[name] = value.float() * tensors[name + SCALE_SUFFIX]
        elif not key.endswith(SCALE_SUFFIX):
            decoded[key] = value
    return decoded


def _untrained_keys(matching) -> set:
    """The extractor's keys still equal to its package's pretrained weights: not written to weight files."""
    if not matching.backbone.pretrained:
        return set()
    package = build_extractor(matching.extractor).state_dict()
    return {f"backbone.{k}" for k, v in matching.backbone.state_dict().items()
            if torch.equal(v.detach().cpu().to(package[k].dtype), package[k])}


def save_weights(path, matching, meta_learner=None, metadata=None):
    """Write safetensors with keys 'matching.*' (fp16) and 'meta.*' (large weights int8, see above), and
    the extractor's name in the metadata."""
    untrained = _untrained_keys(matching)
    state = {f"matching.{k}": v for k, v in matching.state_dict().items() if k not in untrained}
    if meta_learner is not None:
        state.update({f"meta.{k}": v for k, v in meta_learner.state_dict().items()})
    _write(path, state, {**(metadata or {}), "extractor": matching.extractor})


def _write(path, state, metadata):
    """Encode a state (``_encode``) and write it atomically (a .tmp file renamed), metadata as strings."""
    tensors = {}
    for name, value in state.items():
        tensors.update(_encode(name, value))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    tmp.replace(path)


def _load_into(module, tensors, prefix, path):
    state = module.state_dict()
    found = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix) and k not in LEGACY_KEYS}
    from_package = getattr(getattr(module, "backbone", None), "pretrained", False)
    missing = sorted(k for k in set(state) - set(found) if not (from_package and k.startswith("backbone.")))
    unexpected = sorted(set(found) - set(state))
    if missing or unexpected:
        raise ValueError(
            f"weights file {path} does not match the {type(module).__name__}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, expected in state.items():
        if key not in found:  # a pretrained extractor's untrained weight: as the package gave it
            continue
        if found[key].shape != expected.shape:
            raise ValueError(
                f"weights file {path}: tensor {prefix}{key} has shape {tuple(found[key].shape)}, "
                f"expected {tuple(expected.shape)} (wrong variant or a different network?)"
            )
        # NaN/inf weights (a diverged training run) would give NaN responses and meaningless boxes.
        if found[key].is_floating_point() and not torch.isfinite(found[key]).all():
            raise ValueError(f"weights file {path}: tensor {prefix}{key} has NaN or infinite values (diverged training?)")
    module.load_state_dict({**state, **{k: v.to(state[k].dtype) for k, v in found.items()}})


def _read(path):
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"weights file {path} is a directory: give the .safetensors file in it")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"weights file {path} is not a readable safetensors file: {err}") from err
    missing = [k for k in tensors if k.endswith(INT8_SUFFIX) and k[: -len(INT8_SUFFIX)] + SCALE_SUFFIX not in tensors]
    if missing:
        raise ValueError(f"weights file {path}: int8 tensor {missing[0]} has no {SCALE_SUFFIX} partner (a damaged file?)")
    return _decode(tensors)


def file_extractor(path) -> str:
    """The feature extractor a weight file was trained on (files before the seam: "paper")."""
    try:
        with safe_open(str(path), "pt") as handle:
            return (handle.metadata() or {}).get("extractor", "paper")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"weights file {path} is not a readable safetensors file: {err}") from err


def load_matching(path, channels: int | None = None) -> MatchingNetwork:
    """Only the matching network from a weight file (e.g. the matching stage's export), on the extractor
    the file names.

    ``channels`` None: as many last-layer channels as the file holds (192 for MLT's, 224 for MLT-mt's).
    """
    tensors = _read(path)
    if channels is None:
        if "matching.conv5.weight" not in tensors:
            raise ValueError(f"weights file {path} has no matching network (no matching.conv5.weight)")
        channels = tensors["matching.conv5.weight"].shape[0]
    matching = MatchingNetwork(channels, file_extractor(path))
    _load_into(matching, tensors, "matching.", path)
    return matching


def load_weights(variant: str, path=None, extractor: str = "paper"):
    """Networks for ``variant`` on ``extractor`` with weights from ``path`` (default: the shipped file).

    A missing default file gives random weights (a pretrained extractor: its package's) and an
    ``UntrainedWeightsWarning``; an explicit path that is missing, corrupt, of the wrong shape or of
    another extractor raises with the file's name.
    """
    matching, meta_learner = build_networks(variant, extractor)
    default = path is None
    path = default_file(extractor, variant) if default else Path(path)
    if default and (path is None or not path.is_file()):
        where = path or f"the {extractor!r} extractor's default_files"
        warnings.warn(
            f"no trained weights at {where}: MLT is running with UNTRAINED random weights, "
            "its boxes are meaningless (train with `mlt train`, or pass params.weights)",
            UntrainedWeightsWarning,
            stacklevel=3,
        )
        return matching, meta_learner
    tensors = _read(path)
    if file_extractor(path) != extractor:
        raise ValueError(f"weights file {path} was trained on the {file_extractor(path)!r} feature extractor, "
                         f"the parameter set uses {extractor!r} (set params.extractor, or give a {extractor} file)")
    _load_into(matching, tensors, "matching.", path)
    matching.int8_activation_max = read_calibration(path, matching)
    if meta_learner is not None:
        _load_into(meta_learner, tensors, "meta.", path)
    return matching, meta_learner


def save_box_head(path, head: BoxHead, extractor: str, metadata=None):
    """A box head's weights, fp16, keys 'box.*', with its extractor and width in the metadata."""
    _write(path, {f"box.{k}": v for k, v in head.state_dict().items()},
           {**(metadata or {}), "variant": "box", "extractor": extractor, "channels": head.channels})


def load_box_head(path, extractor: str) -> BoxHead:
    """The box head in ``path`` (None: the shipped one for ``extractor``), checked to be trained on ``extractor``."""
    if path is None:
        path = default_file(extractor, "box")
        if path is None:
            raise ValueError(f"no box head ships for the {extractor!r} extractor: give params.box_head_weights "
                             "(trained with `mlt train box`) or use box_estimator='scale_search'")
    tensors = _read(path)
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("variant") != "box":
        raise ValueError(f"weights file {path} holds no box head (train one with `mlt train box`)")
    if metadata.get("extractor") != extractor:
        raise ValueError(f"box head {path} was trained on the {metadata.get('extractor')!r} extractor, "
                         f"the parameter set uses {extractor!r}")
    head = BoxHead(EXTRACTORS[extractor].channels, int(metadata["channels"]))
    _load_into(head, tensors, "box.", path)
    return head
