"""Tracker parameters: one attribute bag, compatible with pytracking's ``TrackerParams``."""
import importlib
import pkgutil

import torch

class TrackerParams:
    """Attribute bag with pytracking's ``has`` / ``get`` / ``set_default_values`` API."""

    def set_default_values(self, default_vals: dict):
        for name, val in default_vals.items():
            if not hasattr(self, name):
                setattr(self, name, val)

    def get(self, name: str, *default):
        if len(default) > 1:
            raise ValueError("get() takes at most one default value")
        if not default:
            return getattr(self, name)
        return getattr(self, name, default[0])

    def has(self, name: str) -> bool:
        return hasattr(self, name)

    def __repr__(self):
        items = ", ".join(f"{k}={v!r}" for k, v in sorted(vars(self).items()))
        return f"TrackerParams({items})"


def cpu_has_bf16() -> bool:
    """Native bf16 matrix instructions (AVX512-BF16 / AMX): without them bf16 is slower than fp32."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name) -> torch.device:
    """Turn a device name into a torch.device, failing clearly on an unknown or absent one."""
    if name is None or name == "auto":
        name = default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"unknown device {name!r}: use 'cpu', 'cuda' or 'cuda:N'") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}: use 'cpu', 'cuda' or 'cuda:N'")
    return device


PRECISIONS = ("auto", "fp32", "int8", "bf16", "fp16")


def resolve_precision(name, device: torch.device) -> str:
    """The precision of the per-frame search backbone. 'auto': fp16 on CUDA; int8 on CPUs with PyTorch's
    x86 int8 engine (3-4x fp32 on the 2-core CPUs measured, see the README), else fp32."""
    from mlt_plugin.networks.int8 import int8_supported

    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: use one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return "fp16"
        return "int8" if int8_supported() else "fp32"
    if name == "int8" and device.type != "cpu":
        raise ValueError("precision 'int8' runs on the CPU only: use 'fp16' or 'bf16' on CUDA")
    if name == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' runs on CUDA only: use 'int8', 'bf16' or 'fp32' on the CPU")
    return name


def load_parameters(name: str = "default") -> TrackerParams:
    """Build the parameter set ``parameter/mlt/<name>.py``."""
    names = parameter_set_names()
    if name not in names:
        raise ValueError(f"unknown parameter set {name!r}; choose one of {', '.join(names)}")
    return importlib.import_module(f"parameter.mlt.{name}").parameters()


def parameter_set_names() -> list:
    import parameter.mlt

    return sorted(m.name for m in pkgutil.iter_modules(parameter.mlt.__path__))
