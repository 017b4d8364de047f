"""The split of ../shared/data: 6 validation sequences (never trained on) and everything else for training.

The data folder: ``--data DIR`` of `mlt train` / `mlt eval`, else ``$MLT_DATA``, else ``../shared/data``
beside the repository (a source checkout).
"""
import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("MLT_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")

# A person, an animal, a vehicle, an object (ground level) and two aerial sequences of other kinds.
VALIDATION = {
    "bolt1": "vot/bolt1",  # person (sprinter), VOT
    "Dog": "otb/Dog",  # animal, OTB
    "car1": "vot/car1",  # vehicle, VOT
    "Vase": "otb/Vase",  # object (grayscale), OTB
    "group2_2": "uav123",  # aerial: person in a group, UAV123@10fps
    "Animal3": "dtb70/Animal3",  # aerial: alpaca, DTB70
}

# Training roots over the shared data with sampling weights: a root is drawn by weight, then one of
# its trajectories uniformly, so these weights make every training video about equally likely and
# give the COCO still pairs about a sixth of the samples.
TRAIN_ROOTS = {"otb": 4.0, "vot": 1.0, "uav123": 2.0, "dtb70": 2.0, "uavdt": 0.5}
COCO_ROOT, COCO_WEIGHT = "coco128", 2.0


def is_validation(name: str) -> bool:
    return name in VALIDATION


def data_dir(data=None) -> Path:
    """The shared data folder: ``data`` when given, else the default; FileNotFoundError saying how to set it."""
    folder = Path(data) if data else SHARED_DATA
    if not folder.is_dir():
        raise FileNotFoundError(f"the shared data folder {folder} is absent: pass --data DIR (or set MLT_DATA), "
                                "or give sequence paths / --source explicitly")
    return folder


def validation_sequences(data=None, names=None) -> list:
    """The validation sequences (``names``, default: all of VALIDATION), read from the data folder."""
    from mlt_plugin.sequences import load_sequences

    folder = data_dir(data)
    unknown = sorted(set(names or ()) - set(VALIDATION))
    if unknown:
        raise ValueError(f"unknown validation sequence(s) {unknown}; the split has {', '.join(VALIDATION)}")
    found = []
    for name in names or VALIDATION:
        found += [s for s in load_sequences(folder / VALIDATION[name]) if s.name == name]
    return found
