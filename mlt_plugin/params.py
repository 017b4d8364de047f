"""Tracker parameters: one attribute bag, compatible with pytracking's ``TrackerParams``."""
import importlib
import importlib.util
import sys
from contextlib import contextmanager
from pathlib import Path

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


# MLT's parameter sets, found by file location: when pytracking runs from inside its own pytracking/
# folder, its `parameter` package is first on sys.path and would shadow ours (and the parameter file
# `mlt pytracking-install` writes there calls back into MLT: endless recursion).
PARAMETER_DIR = Path(__file__).resolve().parent.parent / "parameter"


PRECISIONS = ("auto", "fp32", "int8", "bf16", "fp16")


def resolve_precision(name, device: torch.device) -> str:
    """The precision of the per-frame search backbone. 'auto': fp16 on CUDA; int8 on x86 CPUs with
    OpenVINO (both networks: it kept the select half's mean AUC within 0.01 of fp32, docs/results.md);
    else fp32."""
    from mlt_plugin.networks.int8 import int8_supported

    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}: use one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return "fp16"
        return "int8" if int8_supported() else "fp32"
    if name == "int8" and device.type != "cpu":
        raise ValueError("precision 'int8' runs on the CPU only: use 'fp16' or 'bf16' on CUDA")
    if name == "int8" and not int8_supported():
        raise ValueError("precision 'int8' needs OpenVINO on an x86 CPU, absent here: use 'fp32' (or 'bf16')")
    if name == "fp16" and device.type != "cuda":
        raise ValueError("precision 'fp16' runs on CUDA only: use 'int8', 'bf16' or 'fp32' on the CPU")
    return name


def load_parameters(name: str = "default") -> TrackerParams:
    """Build the parameter set ``parameter/mlt/<name>.py``, or the one an alias names (``ALIASES`` in
    parameter/mlt/__init__.py), with ``name`` set to the alias."""
    names = parameter_set_names()
    if name not in names:
        raise ValueError(f"unknown parameter set {name!r}; choose one of {', '.join(names)}")
    with _own_parameter_package():
        module = importlib.import_module("parameter.mlt")
        params = importlib.import_module(f"parameter.mlt.{module.ALIASES.get(name, name)}").parameters()
    params.name = name
    return params


def parameter_set_names() -> list:
    """Every set a user can name: the files of parameter/mlt/ and the aliases."""
    with _own_parameter_package():
        aliases = importlib.import_module("parameter.mlt").ALIASES
    return sorted([p.stem for p in (PARAMETER_DIR / "mlt").glob("*.py") if p.stem != "__init__"] + list(aliases))


def _ours(module) -> bool:
    return any(Path(p).resolve() == PARAMETER_DIR for p in getattr(module, "__path__", ()))


@contextmanager
def _own_parameter_package():
    """Bind the name ``parameter`` to MLT's package (from its file location) while a set loads.

    The parameter files import each other as ``parameter.mlt.<name>``; a foreign ``parameter``
    package (pytracking's) is set aside for the load and put back afterwards.
    """
    foreign = {}
    if "parameter" in sys.modules and not _ours(sys.modules["parameter"]):
        foreign = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "parameter" or k.startswith("parameter.")}
    if "parameter" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "parameter", PARAMETER_DIR / "__init__.py", submodule_search_locations=[str(PARAMETER_DIR)])
        if spec is None:
            raise FileNotFoundError(f"MLT's parameter package is missing: {PARAMETER_DIR} (reinstall mlt-tracker)")
        module = importlib.util.module_from_spec(spec)
        sys.modules["parameter"] = module
        spec.loader.exec_module(module)
    try:
        yield
    finally:
        if foreign:
            for key in [k for k in sys.modules if k == "parameter" or k.startswith("parameter.")]:
                del sys.modules[key]
            sys.modules.update(foreign)
