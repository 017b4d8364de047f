"""Shapes of the networks and the paper's equations: (2), (3), (4), (6)."""
import pytest
import torch

from mlt_plugin.networks import MatchingNetwork, MetaLearner, label_map, logistic_loss, meta_gradient
from mlt_plugin.networks.losses import balance_weights


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MatchingNetwork().eval()


def test_shapes_follow_the_paper(net):
    x, z = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    assert net.conv4_features(x).shape == (2, 256, 8, 8)
    assert net.conv4_features(z).shape == (2, 256, 24, 24)
    assert net(x, z).shape == (2, 17, 17)
    kernel_shapes = [m.weight.shape for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert kernel_shapes == [(128, 3, 11, 11), (256, 128, 5, 5), (384, 256, 3, 3), (256, 384, 3, 3), (192, 256, 1, 1)]
    assert MatchingNetwork(224).conv5.weight.shape == (224, 256, 1, 1)


def test_meta_learner_layers_and_outputs():
    meta = MetaLearner().eval()
    linear = [m for m in meta.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(256 * 192, 512), (512, 512), (512, 256 * 32 + 224)]
    assert [m.p for m in meta.modules() if isinstance(m, torch.nn.Dropout)] == pytest.approx([0.3, 0.3])
    w_target, attention = meta(torch.randn(3, 192, 256))
    assert w_target.shape == (3, 32, 256) and attention.shape == (3, 224)
    assert ((attention > 0.5) & (attention < 1.5)).all()  # 0.5 + sigmoid (issue 12)


def test_adapted_last_layer_has_224_channels(net):
    conv4 = torch.randn(2, 256, 8, 8)
    base = net.embed(conv4)
    adapted = net.embed(conv4, w_target=torch.randn(1, 32, 256), attention=torch.rand(1, 224))
    assert base.shape == (2, 192, 8, 8) and adapted.shape == (2, 224, 8, 8)
    # L2 normalisation per position across channels.
    assert torch.allclose(adapted.norm(dim=1), torch.ones(2, 8, 8), atol=1e-5)


def test_label_map_marks_the_target_position():
    labels = label_map(torch.tensor([[0.0, 0.0], [3.0, -2.0]]), radius=2)
    assert labels.shape == (2, 17, 17) and set(labels.unique().tolist()) == {-1.0, 1.0}
    assert labels[0, 8, 8] == 1 and labels[0, 8, 11] == -1 and labels[0, 8, 10] == 1
    assert labels[1, 11, 6] == 1 and labels[1, 8, 8] == -1
    assert int((labels[0] > 0).sum()) == 13  # the cells within radius 2 of the centre


def test_loss_weighting_balances_the_classes():
    labels = label_map(torch.zeros(1, 2), radius=2)
    zeta = balance_weights(labels)
    positive = labels > 0
    # Each class carries half of the weight; mean weight 1 keeps the (1/|P|) normalisation of eq. (6).
    assert zeta[positive].sum() == pytest.approx(zeta[~positive].sum())
    assert zeta.mean() == pytest.approx(1.0)
    logits = torch.randn(1, 17, 17)
    manual = (zeta * torch.log1p(torch.exp(-logits * labels))).sum() / 289
    assert logistic_loss(logits, labels) == pytest.approx(float(manual), rel=1e-5)


def test_delta_is_the_mean_negative_gradient_over_contexts(net):
    """Eq. (2) against a direct autograd computation, for two targets with M = 3 contexts each."""
    torch.manual_seed(1)
    template = torch.randn(2, 256, 8, 8).relu()
    search = torch.randn(6, 256, 24, 24).relu()
    labels = label_map(torch.randn(6, 2), radius=2)
    delta = meta_gradient(net, template, search, labels)
    assert delta.shape == (2, 192, 256)
    for target in range(2):
        w5 = net.conv5.weight.detach().clone().requires_grad_(True)
        losses = []
        for i in range(3):
            k = target * 3 + i
            emb = lambda c: torch.nn.functional.normalize(  # noqa: E731
                net.bn5(torch.nn.functional.conv2d(c, w5)), dim=1
            )
            logits = net.correlate(emb(template[target : target + 1]), emb(search[k : k + 1]))
            losses.append(logistic_loss(logits, labels[k : k + 1]))
        (grad,) = torch.autograd.grad(-torch.stack(losses).mean(), w5)
        assert torch.allclose(delta[target], grad.flatten(1), atol=1e-6, rtol=1e-4)


def test_widened_network_computes_the_same_response_and_trains_its_new_channels(net):
    """MLT-mt (224 ch) starting from MLT's 192-channel network: nearly the same logits at the start, and the
    small gains of the 32 new channels get a gradient, so training can grow them."""
    wide = net.widened(224).eval()
    x, z = torch.rand(1, 3, 127, 127) * 255, torch.rand(1, 3, 255, 255) * 255
    with torch.no_grad():
        assert torch.allclose(wide(x, z), net(x, z), atol=1e-3)
    wide.train()
    logits = wide(x, z)
    logistic_loss(logits, label_map(torch.tensor([[8.0, 8.0]]), 2)).backward()
    assert wide.bn5.weight.grad[192:].abs().sum() > 0
    with pytest.raises(ValueError, match="cannot widen"):
        wide.widened(192)


def test_folded_batch_norm_gives_the_same_features():
    torch.manual_seed(2)
    net = MatchingNetwork()
    for m in net.modules():  # non-trivial batch norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    z = torch.rand(2, 3, 255, 255) * 255
    expected = net.conv4_features(z)
    assert torch.allclose(net.fold_batch_norm().conv4_features(z), expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.backbone)


def test_int8_backbone_matches_fp32_on_a_real_crop(shared_data):
    """The shipped network's conv4 in int8 (OpenVINO, the shipped ranges) stays within 3 % of fp32 on real
    crops, and its convolutions run in 8-bit."""
    import numpy as np

    from mlt_plugin.networks.int8 import Int8Backbone, int8_supported
    from mlt_plugin.networks.weights_io import load_weights
    from mlt_plugin.sequences import load_sequence
    from mlt_plugin.tracking.crops import context_size, crop_square

    if not int8_supported():
        pytest.skip("int8 needs OpenVINO on an x86 CPU")
    net = load_weights("mt")[0].eval().fold_batch_norm()
    assert net.int8_activation_max is not None  # the shipped calibration file
    sequence = load_sequence(shared_data / "otb" / "Bird2")
    x, y, w, h = sequence.boxes[40]
    side = context_size(w, h, 0.5) * 255 / 127
    image = sequence.frame(40)
    crops = np.stack([crop_square(image, (x + w / 2, y + h / 2), side * s, 255, image.mean((0, 1))) for s in (0.97, 1, 1.03)])
    backbone = Int8Backbone(net, 3, 255, net.int8_activation_max)
    with torch.inference_mode():
        expected = net.conv4_features(torch.from_numpy(crops).permute(0, 3, 1, 2).float())
    error = float((backbone(crops) - expected).norm() / expected.norm())
    assert 0 < error < 0.03
    runtime = backbone.request.get_compiled_model().get_runtime_model()
    precisions = {op.get_rt_info()["runtimePrecision"].astype(str) for op in runtime.get_ops()
                  if op.get_rt_info()["layerType"].astype(str) == "Convolution"}
    assert precisions <= {"u8", "i8"}, precisions
    with pytest.raises(ValueError, match="built for uint8 crops"):
        backbone(crops[:1])
    with pytest.raises(ValueError, match="3 positive numbers"):
        Int8Backbone(net, 3, 255, [1.0, 0.0, 2.0])


def test_int8_calibration_file_is_checked_against_its_weights(tmp_path):
    from mlt_plugin.networks.int8 import calibration_path, write_calibration
    from mlt_plugin.networks.weights_io import load_weights, save_weights

    net = MatchingNetwork(224).eval()
    path = tmp_path / "mine.safetensors"
    save_weights(path, net)
    assert load_weights("mt", path)[0].int8_activation_max is None  # no file: the tracker calibrates once
    write_calibration(path, load_weights("mt", path)[0], torch.tensor([1.0, 2.0, 3.0]), crops=6)
    assert calibration_path(path).name == "mine.int8.json"
    assert load_weights("mt", path)[0].int8_activation_max.tolist() == [1.0, 2.0, 3.0]
    with torch.no_grad():
        net.backbone[0].weight.add_(0.1)  # retrained since: the ranges no longer belong to it
    save_weights(path, net)
    with pytest.raises(ValueError, match="other weights"):
        load_weights("mt", path)
    calibration_path(path).write_text("{not json")
    with pytest.raises(ValueError, match="unreadable"):
        load_weights("mt", path)


def test_precision_resolution():
    from mlt_plugin.networks.int8 import int8_supported
    from mlt_plugin.params import resolve_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == ("int8" if int8_supported() else "fp32")
    assert resolve_precision("auto", cuda) == "fp16"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        resolve_precision("half", cpu)
    with pytest.raises(ValueError, match="CPU only"):
        resolve_precision("int8", cuda)
    with pytest.raises(ValueError, match="CUDA only"):
        resolve_precision("fp16", cpu)


@pytest.mark.parametrize("extractor, sides", [("paper", (8, 24)), ("lite", (16, 32))])
def test_template_matcher_equals_embed_and_correlate(extractor, sides):
    torch.manual_seed(0)
    net = MatchingNetwork(extractor=extractor).eval()
    with torch.no_grad():  # bn5 statistics other than the identity, so that folding them is tested
        net.bn5.running_mean.normal_()
        net.bn5.running_var.uniform_(0.5, 2.0)
        net.bn5.weight.uniform_(0.5, 1.5)
        net.bn5.bias.normal_()
    channels = net.backbone.channels
    template_conv4 = torch.randn(1, channels, sides[0], sides[0])
    search_conv4 = torch.randn(3, sides[1], sides[1], channels).permute(0, 3, 1, 2)  # channels-last, as OpenVINO gives
    adapted = {"w_target": torch.randn(1, 32, channels), "attention": torch.rand(1, 224) + 0.5,
               "target_bias": torch.randn(1, 32)}
    for adaptation in ({}, adapted):
        with torch.no_grad():
            expected = net.correlate(net.embed(template_conv4, **adaptation), net.embed(search_conv4, **adaptation))
            got = net.matcher(template_conv4, **adaptation)(search_conv4)
        assert got.shape == expected.shape == (3, 17, 17)
        assert torch.allclose(got, expected, atol=1e-4)
    with pytest.raises(ValueError, match="eval"):
        net.train().matcher(template_conv4)
