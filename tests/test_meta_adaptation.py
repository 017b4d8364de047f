"""Issue 12: per-sample delta normalisation, target channels normalised like the base channels, bounded
attention, context patches never from the anchor's frame, and the relative confidence gate."""
import warnings

import numpy as np
import pytest
import torch

from mlt_plugin import MLT, load_parameters
from mlt_plugin.demo import demo_sequence
from mlt_plugin.networks import MatchingNetwork
from mlt_plugin.networks.meta_learner import MetaLearner, normalise_delta
from mlt_plugin.training.sampling import context_candidates, episode_frames


def test_delta_is_normalised_per_sample():
    delta = torch.randn(3, 192, 256) * torch.tensor([1e-4, 1.0, 30.0]).view(3, 1, 1)
    normalised = normalise_delta(delta)
    assert torch.allclose(normalised.pow(2).mean((1, 2)).sqrt(), torch.ones(3), atol=1e-5)
    assert torch.allclose(normalised[1], delta[1] / delta[1].pow(2).mean().sqrt(), atol=1e-6)
    assert torch.equal(normalise_delta(torch.zeros(1, 192, 256)), torch.zeros(1, 192, 256))
    # So the meta-learner sees only delta's direction: any per-sample scale gives the same output.
    meta = MetaLearner().eval()
    with torch.no_grad():
        meta.layers[-1].weight.normal_(std=0.05)
        w_small, a_small = meta(delta[1:2] * 1e-3)
        w_large, a_large = meta(delta[1:2] * 7.0)
    assert torch.allclose(w_small, w_large, atol=1e-5) and torch.allclose(a_small, a_large, atol=1e-6)


def test_attention_starts_at_one_and_stays_in_range():
    meta = MetaLearner().eval()
    with torch.no_grad():
        _, attention = meta(torch.randn(2, 192, 256))
        assert torch.allclose(attention[:, :192], torch.ones(2, 192), atol=0.05)  # base channels: eq. (1)
        assert torch.allclose(attention[:, 192:], torch.full((2, 32), 0.5 + torch.sigmoid(torch.tensor(-4.0))), atol=0.05)
        meta.layers[-1].bias.fill_(1e4)
        _, high = meta(torch.randn(2, 192, 256))
        meta.layers[-1].bias.fill_(-1e4)
        _, low = meta(torch.randn(2, 192, 256))
    assert torch.allclose(high, torch.full_like(high, 1.5)) and torch.allclose(low, torch.full_like(low, 0.5))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = MatchingNetwork().eval()
    with torch.no_grad():
        net.bn5.weight.uniform_(0.5, 1.5)
        net.bn5.bias.uniform_(-0.2, 0.2)
        net.bn5.running_mean.normal_(std=2.0)
        net.bn5.running_var.uniform_(5.0, 20.0)
    return net


def test_target_channels_are_standardised_on_the_exemplar(net):
    template = torch.relu(torch.randn(2, 256, 8, 8)) * 3 + 1
    w_target = torch.randn(2, 32, 256)
    kernels, bias = net.target_kernels(w_target, template, floor=0.0)
    assert kernels.shape == (2, 32, 256) and bias.shape == (2, 32)
    target = torch.einsum("bchw,bkc->bkhw", template, kernels) + bias[:, :, None, None]
    gain = (net.bn5.weight.pow(2) + net.bn5.bias.pow(2)).mean().sqrt()
    assert torch.allclose(target.mean((2, 3)), torch.zeros(2, 32), atol=1e-3)
    assert torch.allclose(target.pow(2).mean((2, 3)).sqrt(), gain.expand(2, 32), rtol=1e-3)
    # Scale-free in w_target: a kernel 100x larger gives the same channels (the rows had norm 8-185).
    kernels_big, bias_big = net.target_kernels(w_target * 100, template, floor=0.0)
    assert torch.allclose(kernels_big, kernels, rtol=1e-4, atol=1e-6) and torch.allclose(bias_big, bias, rtol=1e-4, atol=1e-5)
    # The floor bounds a kernel that barely varies over the exemplar instead of blowing it up.
    flat = torch.ones(1, 256, 8, 8)
    flat[:, 0] += torch.randn(1, 8, 8) * 1e-6
    kernels_flat, _ = net.target_kernels(torch.randn(1, 32, 256), flat)
    assert torch.isfinite(kernels_flat).all() and kernels_flat.abs().max() < 1e6


def test_target_channels_add_to_the_embedding_instead_of_replacing_it(net):
    template = torch.relu(torch.randn(1, 256, 8, 8)) * 3 + 1
    search = torch.relu(torch.randn(4, 256, 24, 24)) * 3 + 1
    huge = torch.randn(1, 32, 256) * 185  # the unnormalised rows of the issue
    kernels, bias = net.target_kernels(huge, template)
    for conv4 in (template, search):
        features = net.features(conv4, w_target=kernels, attention=torch.ones(1, 224), target_bias=bias)
        energy = features.pow(2).sum((0, 2, 3))
        share = float(energy[192:].sum().detach() / energy.sum().detach())
        assert 0.02 < share < 0.5, share  # 32 of 224 channels at the typical base-channel magnitude
    raw = net.features(template, w_target=huge).detach()
    energy = raw.pow(2).sum((0, 2, 3))
    assert float(energy[192:].sum() / energy.sum()) > 0.9  # what the unnormalised channels did


def test_context_never_contains_the_anchor_frame():
    rng = np.random.default_rng(0)
    frames = np.arange(0, 3000, 12)  # a long trajectory, sparsely cached
    for _ in range(200):
        anchor = int(rng.integers(len(frames)))
        candidates = context_candidates(frames, anchor, num_reg=16, max_gap=100)
        assert anchor not in candidates and len(np.unique(candidates)) >= 16
        i, context = episode_frames(rng, frames, num_reg=16, max_gap=100)
        assert i not in context and len(np.unique(context)) == 16
    # A still image (one frame) is its own context: its augmented crops.
    assert context_candidates(np.array([0]), 0, 16, 100).tolist() == [0]


def _tracker(**overrides):
    params = load_parameters("default")
    params.device = "cpu"
    params.autocast = False
    for key, value in overrides.items():
        setattr(params, key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLT(params)


def test_relative_gate_rejects_a_frame_without_the_target():
    demo = demo_sequence(num_frames=30)  # the demo's motion per frame shrinks with its length
    tracker = _tracker(update_interval=1000)
    tracker.initialize(demo.frame(0), demo.boxes[0])
    assert tracker.reference_height > 0
    tracker.track(demo.frame(1))
    assert tracker.last_gate > tracker.params.confidence_threshold  # the target, one frame later
    stored = len(tracker.memory)
    blank = np.full_like(demo.frame(2), 120)  # nothing to match: a flat response
    tracker.track(blank)
    assert tracker.last_gate < 0.5 and len(tracker.memory) == stored
    # The old gate (probability at the peak) is still selectable.
    old = _tracker(update_interval=1000, confidence="probability")
    old.initialize(demo.frame(0), demo.boxes[0])
    result = old.track(demo.frame(1))
    assert old.last_gate == pytest.approx(result["object_presence_score"])


def test_location_and_size_errors_tell_a_wrong_position_from_a_wrong_size():
    from mlt_plugin.metrics import location_and_size_errors

    truth = np.array([[10.0, 10.0, 20.0, 20.0], [10.0, 10.0, 20.0, 20.0]])
    shifted = truth + [20.0, 0.0, 0.0, 0.0]  # one target size to the right, right size
    grown = np.array([[0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 40.0, 40.0]])  # same centre, twice the size
    assert location_and_size_errors(shifted, truth) == pytest.approx((1.0, 0.0))
    assert location_and_size_errors(grown, truth) == pytest.approx((0.0, np.log(2)))
