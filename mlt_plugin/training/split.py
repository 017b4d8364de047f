"""The validation split: 21 sequences of 6 benchmarks, never trained on, in two fixed halves (choices on one, claims on the other).

- **select**: checkpoints, thresholds and every other choice are made on these.
- **report**: claims only; each candidate that could ship is run on them once.

The sequences lie in three folders beside the repository (a source checkout):
- ``shared``: the data folder, ``--data DIR`` of `mlt train` / `mlt eval`, else ``$MLT_DATA``, else
  ``../shared/data``;
- ``traindata``: ``../traindata``, built by ``../shared/tools/traindata/assemble.py`` (OTB layout; its
  other sequences train the meta-learner and MLT-mt);
- ``large``: ``../traindata_large``, built by ``tools/traindata_large.py`` (DAVIS 2016: the other 10 of
  its 20 videos are training videos).
A sequence whose folder is absent is skipped with a message.
"""
import os
import sys
from pathlib import Path

CHECKOUT_PARENT = Path(__file__).resolve().parents[2].parent
SHARED_DATA = Path(os.environ.get("MLT_DATA") or CHECKOUT_PARENT / "shared" / "data")
TRAIN_DATA = CHECKOUT_PARENT / "traindata"  # extra real sequences, OTB layout under otb/
TRAIN_LARGE = CHECKOUT_PARENT / "traindata_large"  # Tiny ImageNet-200 and DAVIS 2016 (tools/traindata_large.py)

# name: (folder, path in it, half). Each half has people, animals, vehicles, ground-level and aerial video;
# select: OTB, VOT, UAV123, UAVDT, DAVIS; report: OTB, VOT, UAV123, DTB70, DAVIS.
VALIDATION = {
    "Dog": ("shared", "otb/Dog", "select"),  # animal, OTB
    "car1": ("shared", "vot/car1", "select"),  # vehicle, VOT
    "group2_2": ("shared", "uav123", "select"),  # aerial: person in a group, UAV123@10fps
    "Biker": ("traindata", "otb/Biker", "select"),  # person, OTB
    "S0310": ("traindata", "otb/S0310", "select"),  # aerial: car, UAVDT
    "bmx-trees": ("large", "DAVIS", "select"),  # person on a bike, DAVIS
    "camel": ("large", "DAVIS", "select"),  # animal, DAVIS
    "drift-chicane": ("large", "DAVIS", "select"),  # vehicle, DAVIS
    "libby": ("large", "DAVIS", "select"),  # dog, DAVIS
    "soapbox": ("large", "DAVIS", "select"),  # vehicle with people, DAVIS
    "bolt1": ("shared", "vot/bolt1", "report"),  # person (sprinter), VOT
    "Vase": ("shared", "otb/Vase", "report"),  # object (grayscale), OTB
    "Animal3": ("shared", "dtb70/Animal3", "report"),  # aerial: alpaca, DTB70
    "Diving": ("traindata", "otb/Diving", "report"),  # person, OTB
    "Gull2": ("traindata", "otb/Gull2", "report"),  # aerial: bird, DTB70
    "wakeboard4": ("traindata", "otb/wakeboard4", "report"),  # aerial: person on water, UAV123
    "breakdance": ("large", "DAVIS", "report"),  # person, DAVIS
    "car-roundabout": ("large", "DAVIS", "report"),  # vehicle, DAVIS
    "dog": ("large", "DAVIS", "report"),  # animal, DAVIS
    "kite-surf": ("large", "DAVIS", "report"),  # person on water, DAVIS
    "parkour": ("large", "DAVIS", "report"),  # person, DAVIS
}
HALVES = ("select", "report")
# Never trained on, not validated on either: a longer cut of the same video as Biker.
HELD_OUT = {"Biker470"}

# Training roots over the shared data with sampling weights: a root is drawn by weight, then one of
# its trajectories uniformly, so these weights make every training video about equally likely and
# give the COCO still pairs about a sixth of the samples.
TRAIN_ROOTS = {"otb": 4.0, "vot": 1.0, "uav123": 2.0, "dtb70": 2.0, "uavdt": 0.5}
COCO_ROOT, COCO_WEIGHT = "coco128", 2.0
# The meta-learner's training videos: the rest of TRAIN_DATA/otb, trajectories disjoint from
# the matching network's (which trained on the training split of SHARED_DATA only), as the paper trains
# the meta-learner on ILSVRC VID val and the matching network on VID train.
META_TRAIN_ROOT = "otb"


def is_validation(name: str) -> bool:
    """Never to be trained on: a validation sequence, or held out."""
    return name in VALIDATION or name in HELD_OUT


def data_dir(data=None) -> Path:
    """The shared data folder: ``data`` when given, else the default; FileNotFoundError saying how to set it."""
    folder = Path(data) if data else SHARED_DATA
    if not folder.is_dir():
        raise FileNotFoundError(f"the shared data folder {folder} is absent: pass --data DIR (or set MLT_DATA), "
                                "or give sequence paths / --source explicitly")
    return folder


def validation_names(half=None) -> list:
    """The validation sequences' names, of one half ('select' or 'report') or of both (None)."""
    if half not in (None, *HALVES):
        raise ValueError(f"unknown validation half {half!r}: use one of {', '.join(HALVES)}")
    return [name for name, (_, _, h) in VALIDATION.items() if half in (None, h)]


def validation_sequences(data=None, names=None, half=None) -> list:
    """The validation sequences (``names``, default: those of ``half``, default both halves), read from
    their folders; absent folders are skipped with a message."""
    from mlt_plugin.sequences import load_sequences

    unknown = sorted(set(names or ()) - set(VALIDATION))
    if unknown:
        raise ValueError(f"unknown validation sequence(s) {unknown}; the split has {', '.join(VALIDATION)}")
    folders = {"shared": data_dir(data), "traindata": TRAIN_DATA, "large": TRAIN_LARGE}
    found, loaded = [], {}
    for name in names or validation_names(half):
        folder, path, _ = VALIDATION[name]
        root = folders[folder] / path
        if not root.is_dir():
            print(f"validation: {name} skipped, {root} is absent", file=sys.stderr)
            continue
        if root not in loaded:  # a benchmark root (UAV123, DAVIS) is read once for all its sequences
            loaded[root] = load_sequences(root)
        found += [s for s in loaded[root] if s.name == name]
    return found
