import warnings

import numpy as np
import pytest
import torch

from mlt_plugin.sequences import Sequence
from mlt_plugin.training.datasets.sources import Source

from mlt_plugin.training.split import SHARED_DATA

torch.set_num_threads(2)


@pytest.fixture
def shared_data():
    """The shared real data folder (../shared/data); tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (the ../shared/data folder beside the repo)")
    return SHARED_DATA


@pytest.fixture
def shared_models():
    """The peers' model folder (../shared/models, or $MLT_MODELS); tests that need it skip where it is absent."""
    from mlt_plugin.build import MODELS

    if not MODELS.is_dir():
        pytest.skip(f"peer models not found at {MODELS} (the ../shared/models folder beside the repo, or $MLT_MODELS)")
    return MODELS


@pytest.fixture
def quiet_untrained():
    """Silence the untrained-weights warning where a test does not depend on accuracy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def one_thread():
    """The machine's cores belong to real training runs: training tests use one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def labelled_source(count=6, seed=0):
    """Still 64x64 images of two classes (bright squares on dark, dark squares on bright), one box each."""
    rng = np.random.default_rng(seed)
    objects = []
    for k in range(count):
        label = "bright" if k % 2 else "dark"
        image = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8) + (0 if label == "bright" else 190)
        x, y = rng.integers(8, 24, 2)
        image[y : y + 32, x : x + 32] = 255 - image[y : y + 32, x : x + 32]
        objects.append(Sequence(f"img{k}", [image], np.array([[x, y, 32, 32]], float), label=label))
    return Source("tinyimagenet", "memory", 1.0, objects)
