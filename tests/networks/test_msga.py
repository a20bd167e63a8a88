"""Tests for :class:`svseg.networks.msga.MSGA` through the shared network tester.

Inputs are synthetic random tensors (shape/structure tests only). The default parameter pin
and the per-module counts come from ``../shared/reference/figures.md`` section 5 (the
authors' *used* parameters); other pins are svseg's own figures, pinned so that changes are
deliberate. The full-size network (104 M parameters) runs once at 64x64; the other cases use
the ResNet-50 backbone and narrow attention blocks to stay cheap.
"""
from __future__ import annotations

import math

import pytest
import torch

from svseg.networks import MSGA
from svseg.networks.msga import msga_weights_init
from tests.networks.base import BadArgs, NetCase, NetworkTester, ParamPin, eval_and_train_outputs, rejected_kwargs


def _train_shapes(b, k, spatial, features):
    """The authors' 32-tuple: 8 semantic vectors, 8 inputs, 8 reconstructions, 8 predictions."""
    quarter = tuple(s // 4 for s in spatial)
    vec = (b, 8 * features * math.prod(q // 4 for q in quarter))
    feat = (b, 2 * features) + quarter
    pred = (b, k) + tuple(spatial)
    return [vec] * 8 + [feat] * 16 + [pred] * 8


_AUTHORS_MODULES = {
    "backbone": 86_736_064,
    "down.3": 131_265,
    "down.2": 65_729,
    "down.1": 32_961,
    "down.0": 16_577,
    "fuse": 188_995,
    "steps.0.semantic": 6_970_496,
    "steps.1.semantic": 6_970_496,
}
for _t in range(2):
    for _s in range(4):
        _AUTHORS_MODULES[f"steps.{_t}.pam.{_s}"] = 116_179
        _AUTHORS_MODULES[f"steps.{_t}.cam.{_s}"] = 110_979
        _AUTHORS_MODULES[f"steps.{_t}.conv_sem.{_s}"] = 73_792
        _AUTHORS_MODULES[f"steps.{_t}.conv_out.{_s}"] = 4_160
for _s in range(4):
    _AUTHORS_MODULES[f"predict.{_s}"] = 325
    _AUTHORS_MODULES[f"predict_refined.{_s}"] = 325

_SMALL = dict(backbone="resnet50", features=16)


class TestMSGA(NetworkTester):
    network_class = MSGA
    cases = [
        NetCase(
            "2d_small_40x56",  # 40 and 56 are divisible by 8 but not by 16 or 32
            dict(spatial_dims=2, in_channels=2, out_channels=3, **_SMALL),
            (2, 2, 40, 56),
            (2, 3, 40, 56),
            _train_shapes(2, 3, (40, 56), 16),
        ),
        NetCase(
            "2d_authors_64x64",
            dict(spatial_dims=2, in_channels=1, out_channels=5),
            (2, 1, 64, 64),
            (2, 5, 64, 64),
            _train_shapes(2, 5, (64, 64), 64),
        ),
        NetCase(
            "3d_small_32x32x32",
            dict(spatial_dims=3, in_channels=1, out_channels=2, backbone="resnet50", features=8),
            (2, 1, 32, 32, 32),
            (2, 2, 32, 32, 32),
            _train_shapes(2, 2, (32, 32, 32), 8),
        ),
    ]
    param_pins = [
        ParamPin("authors_default", dict(spatial_dims=2, in_channels=1, out_channels=5), 103_556_063, _AUTHORS_MODULES),
        # paper-text backbone: torchvision resnet101 without fc, 1-channel stem (42,493,888) + head
        ParamPin("paper_resnet101", dict(backbone="resnet101"), 59_313_887, {"backbone": 42_493_888}),
        ParamPin("two_classes", dict(out_channels=2), 103_554_503),
        # svseg's own 3D build of the authors' configuration (no published reference)
        ParamPin("svseg_3d_default", dict(spatial_dims=3, init_weights=False), 157_203_807, {"backbone": 108_099_136}),
    ]
    invalid_kwargs = rejected_kwargs(
        spatial_dims=[4], in_channels=[0], out_channels=[2.0], features=[12], backbone=["vgg16"], pretrained=[True, 3],
    ) + [BadArgs("pretrained_3d", dict(spatial_dims=3, pretrained="weights.pth"), "pretrained")]
    export_method = "export"
    export_case = 0


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return MSGA(spatial_dims=2, in_channels=1, out_channels=3, **_SMALL)


@pytest.mark.parametrize("shape, match", [((1, 1, 36, 40), "divisible by 8"), ((1, 2, 32, 32), "input channels"), ((1, 32, 32), "4D")])
def test_bad_input_raises(small_net, shape, match):
    with pytest.raises(ValueError, match=match):
        small_net.eval()(torch.zeros(*shape))


def test_eval_is_mean_of_refined_predictions(small_net):
    """Eval output = mean of train-mode elements 28..31 (refined heads), computed with BN frozen."""
    x = torch.randn(2, 1, 32, 48)
    ev, out = eval_and_train_outputs(small_net, x)
    assert len(out) == 32
    refined = torch.stack(out[28:32]).mean(0)
    torch.testing.assert_close(ev, refined)
    assert not torch.allclose(ev, torch.stack(out[24:28]).mean(0))
    # semantic-module inputs and reconstructions pair index by index (same shapes, 2*features channels)
    for i in range(8):
        assert out[8 + i].shape == out[16 + i].shape == (2, 32, 8, 12)
    # step-1 inputs are cat(F_s, F_MS): scales share their second half (the fused feature)
    torch.testing.assert_close(out[8][:, 16:], out[11][:, 16:])
    assert not torch.allclose(out[8][:, :16], out[11][:, :16])


def test_authors_weight_init():
    """Default init = the authors' weights_init: Xavier-normal convs, BN weight ~ N(1, 0.02), bias 0."""
    torch.manual_seed(0)
    net = MSGA(spatial_dims=2, in_channels=1, out_channels=3, **_SMALL)
    bn_w = torch.cat([m.weight.detach() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    bn_b = torch.cat([m.bias.detach() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert abs(float(bn_w.mean()) - 1.0) < 0.01 and 0.015 < float(bn_w.std()) < 0.025
    assert torch.all(bn_b == 0)
    w = net.steps[0].semantic.enc2[3].weight.detach()  # 3x3 conv 128 -> 128 (features 16)
    fan_in = w.shape[1] * w[0, 0].numel()
    fan_out = w.shape[0] * w[0, 0].numel()
    expected = math.sqrt(2.0 / (fan_in + fan_out))
    assert abs(float(w.std()) / expected - 1.0) < 0.05
    # without init_weights torchvision-style defaults remain (BN weights exactly 1)
    plain = MSGA(spatial_dims=2, in_channels=1, out_channels=3, init_weights=False, **_SMALL)
    assert all(torch.all(m.weight == 1) for m in plain.modules() if isinstance(m, torch.nn.BatchNorm2d))
    # the init function is also usable on its own
    conv = torch.nn.Conv3d(4, 6, 3)
    msga_weights_init(conv)
    assert abs(float(conv.weight.detach().std()) / math.sqrt(2.0 / (4 * 27 + 6 * 27)) - 1.0) < 0.2


def test_pretrained_torchvision_checkpoint(tmp_path):
    """A torchvision-layout ResNet-50 state dict loads, with the RGB stem summed to 1 channel."""
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    ref = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50_synthetic.pth"  # random weights: no download
    torch.save(ref.state_dict(), path)
    net = MSGA(spatial_dims=2, in_channels=1, out_channels=2, backbone="resnet50", features=8, pretrained=str(path))
    torch.testing.assert_close(net.backbone.conv1.weight, ref.conv1.weight.sum(1, keepdim=True))
    torch.testing.assert_close(net.backbone.layer3[5].conv2.weight, ref.layer3[5].conv2.weight)
    torch.testing.assert_close(net.backbone.layer4[0].downsample[1].running_var, ref.layer4[0].downsample[1].running_var)
    # 6-channel stem: RGB tiled twice and halved, so a constant image gives the same stem response
    net6 = MSGA(spatial_dims=2, in_channels=6, out_channels=2, backbone="resnet50", features=8, pretrained=path)
    with torch.no_grad():
        torch.testing.assert_close(net6.backbone.conv1(torch.ones(1, 6, 16, 16)), ref.conv1(torch.ones(1, 3, 16, 16)))
    torch.testing.assert_close(net6.backbone.conv1.weight[:, 4], 0.5 * ref.conv1.weight[:, 1])
    # wrong backbone -> ValueError; missing file -> FileNotFoundError
    with pytest.raises(ValueError, match="does not match"):
        MSGA(backbone="resnet101", features=8, pretrained=path)
    with pytest.raises(FileNotFoundError, match="not found"):
        MSGA(backbone="resnet50", features=8, pretrained=tmp_path / "missing.pth")
