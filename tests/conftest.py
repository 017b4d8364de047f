import warnings

import pytest
import torch

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
