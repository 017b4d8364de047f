"""The split of the data folder (default ../shared/data): 6 validation sequences (never trained on) and
everything else for training; plus 5 validation sequences from ../traindata/otb (the other sequences
there train the meta-learner).

The data folder: ``--data DIR`` of `mlt train` / `mlt eval`, else ``$MLT_DATA``, else ``../shared/data``
beside the repository (a source checkout).
"""
import os
import sys
from pathlib import Path

SHARED_DATA = Path(os.environ.get("MLT_DATA") or Path(__file__).resolve().parents[2].parent / "shared" / "data")
TRAIN_DATA = Path(__file__).resolve().parents[2].parent / "traindata"  # extra real sequences, OTB layout under otb/

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


# Validation sequences under TRAIN_DATA (issue 12): sequences the matching network never saw either.
VALIDATION_TRAINDATA = {
    "Biker": "otb/Biker",  # person (OTB), 142 frames
    "Diving": "otb/Diving",  # person (OTB), 215 frames
    "Gull2": "otb/Gull2",  # aerial: bird (DTB70), 237 frames
    "S0310": "otb/S0310",  # aerial: car (UAVDT), 118 frames
    "wakeboard4": "otb/wakeboard4",  # aerial: person on water (UAV123), 233 frames
}
# Never trained on, not validated on either: a longer cut of the same video as Biker.
HELD_OUT = {"Biker470"}
# The meta-learner's training videos (issue 12): the rest of TRAIN_DATA/otb, trajectories disjoint from
# the matching network's (which trained on the training split of SHARED_DATA only), as the paper trains
# the meta-learner on ILSVRC VID val and the matching network on VID train.
META_TRAIN_ROOT = "otb"


def is_validation(name: str) -> bool:
    return name in VALIDATION or name in VALIDATION_TRAINDATA or name in HELD_OUT


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
    unknown = sorted(set(names or ()) - set(VALIDATION) - set(VALIDATION_TRAINDATA))
    if unknown:
        raise ValueError(f"unknown validation sequence(s) {unknown}; the split has "
                         f"{', '.join([*VALIDATION, *VALIDATION_TRAINDATA])}")
    found = []
    for name in names or [*VALIDATION, *VALIDATION_TRAINDATA]:
        if name in VALIDATION:
            found += [s for s in load_sequences(folder / VALIDATION[name]) if s.name == name]
        elif not (TRAIN_DATA / VALIDATION_TRAINDATA[name]).is_dir():
            print(f"validation: {name} skipped, {TRAIN_DATA / VALIDATION_TRAINDATA[name]} is absent", file=sys.stderr)
        else:
            found += [s for s in load_sequences(TRAIN_DATA / VALIDATION_TRAINDATA[name]) if s.name == name]
    return found
