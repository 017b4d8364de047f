"""The split of ../shared/data: 6 validation sequences (never trained on) and everything else for training."""
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

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


def validation_sequences() -> list:
    """The validation sequences, read from the shared data."""
    from mlt_plugin.sequences import load_sequences

    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"the shared data folder {SHARED_DATA} is absent: give sequence paths explicitly")
    found = []
    for name, rel in VALIDATION.items():
        found += [s for s in load_sequences(SHARED_DATA / rel) if s.name == name]
    return found
