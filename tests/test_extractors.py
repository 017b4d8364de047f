"""The lite feature extractor (ImageNet EfficientNet-Lite0 from its package) behind the paper's matching
head: shapes, what its weight files hold, and its OpenVINO search forward."""
import numpy as np
import pytest
import torch

from mlt_plugin.networks import MatchingNetwork
from mlt_plugin.networks.extractors import LiteExtractor, PaperExtractor
from mlt_plugin.networks.weights_io import load_matching, load_weights, save_weights


@pytest.fixture(scope="module")
def lite():
    torch.manual_seed(0)
    return MatchingNetwork(extractor="lite").eval()


def test_lite_gives_the_papers_17x17_response(lite):
    x, z = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    with torch.no_grad():
        assert lite.conv4_features(x).shape == (2, 112, 16, 16)
        assert lite.conv4_features(z).shape == (2, 112, 32, 32)
        assert lite(x, z).shape == (2, 17, 17)
    assert lite.conv5.weight.shape == (192, 112, 1, 1)
    assert LiteExtractor.feature_side(255) == 32 and PaperExtractor.feature_side(255) == 24


def test_lite_weights_come_from_the_package_and_files_hold_only_trained_layers(lite, tmp_path):
    again = LiteExtractor()
    for key, value in lite.backbone.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key  # the package's ImageNet weights, not random
    path = tmp_path / "lite_mt.safetensors"
    save_weights(path, lite)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as handle:
        keys = set(handle.keys())
    assert keys == {f"matching.{k}" for k in lite.state_dict() if not k.startswith("backbone.")}
    assert path.stat().st_size < 100_000
    loaded = load_matching(path)
    assert loaded.extractor == "lite" and torch.equal(loaded.conv5.weight, lite.conv5.weight.half().float())


def test_a_weight_file_of_the_other_extractor_is_refused(lite, tmp_path):
    path = tmp_path / "lite.safetensors"
    save_weights(path, MatchingNetwork(224, extractor="lite"))
    with pytest.raises(ValueError, match="trained on the 'lite' feature extractor.*uses 'paper'"):
        load_weights("mt", path, extractor="paper")


def test_openvino_fp32_matches_torch_and_int8_needs_its_ranges(lite):
    pytest.importorskip("openvino", reason="openvino is not installed")
    from mlt_plugin.networks.lite_openvino import LiteOpenVINO, activation_maxima

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (2, 127, 127, 3), dtype=np.uint8)
    engine = LiteOpenVINO(lite.backbone, batch=2, size=127, precision="fp32")
    with torch.no_grad():
        expected = lite.conv4_features(torch.from_numpy(crops).permute(0, 3, 1, 2).float())
    got = engine(crops)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-3 * expected.abs().max()
    with pytest.raises(ValueError, match="uint8 crops"):
        engine(crops[:1])
    with pytest.raises(ValueError, match="10 positive activation ranges"):
        LiteOpenVINO(lite.backbone, batch=2, size=127, precision="int8", maxima=[1.0])
    maxima = activation_maxima(lite.backbone, torch.from_numpy(crops).permute(0, 3, 1, 2))
    assert maxima.shape == (10,) and (maxima > 0).all()
    quantised = LiteOpenVINO(lite.backbone, batch=2, size=127, precision="int8", maxima=maxima)(crops)
    # int8 rounding of depthwise weights costs ~20 % relative feature error (docs/results.md); it must stay an approximation.
    assert torch.nn.functional.cosine_similarity(quantised.flatten(), expected.flatten(), dim=0) > 0.9
