"""Tests for the pieces the svseg networks share (:mod:`svseg.networks.blocks`).

All tensors are synthetic; the reference layouts come from torchvision's model builders
(random weights, nothing downloaded).
"""
from __future__ import annotations

import pytest
import torch

from svseg.networks.blocks import (
    ResNetBottleneck,
    ResNetEncoder,
    adapt_stem_channels,
    check_network_input,
    check_positive_int,
    state_dict_mismatch_summary,
)
from tests.networks.base import count_parameters


def test_resnext_encoder_layout_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    enc = ResNetEncoder(2, 3, groups=32, width_per_group=4)
    tv = torchvision.models.resnext50_32x4d(weights=None)
    tv_keys = {k: v.shape for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in enc.state_dict().items()} == tv_keys
    assert count_parameters(enc) == count_parameters(tv) - count_parameters(tv.fc)


def test_encoder_stage_outputs():
    torch.manual_seed(0)
    enc = ResNetEncoder(3, 1, layers=(1, 1, 1, 1), stem_width=8, norm_eps=1e-3).eval()
    with torch.no_grad():
        feats = enc(torch.randn(1, 1, 32, 32, 32))
    assert [tuple(f.shape) for f in feats] == [(1, 8, 16, 16, 16), (1, 32, 8, 8, 8), (1, 64, 4, 4, 4),
                                               (1, 128, 2, 2, 2), (1, 256, 1, 1, 1)]
    assert enc.out_channels == [8, 32, 64, 128, 256]
    assert all(m.eps == 1e-3 for m in enc.modules() if isinstance(m, torch.nn.BatchNorm3d))


def test_bottleneck_downsample_only_when_shape_changes():
    assert ResNetBottleneck(2, 256, 64).downsample is None
    assert ResNetBottleneck(2, 64, 64).downsample is not None  # width 64 -> 256
    strided = ResNetBottleneck(2, 256, 64, stride=2)
    assert strided.downsample is not None and strided.downsample[0].stride == (2, 2)
    grouped = ResNetBottleneck(2, 256, 128, groups=32, width_per_group=4)
    assert grouped.conv2.groups == 32 and grouped.conv2.out_channels == 256  # int(128 * 4 / 64) * 32


def test_adapt_stem_channels():
    w = torch.randn(4, 3, 7, 7)
    assert adapt_stem_channels(w, 3) is w
    torch.testing.assert_close(adapt_stem_channels(w, 1), w.sum(1, keepdim=True))
    five = adapt_stem_channels(w, 5)  # tiled (RGB RG) and scaled by 3 / 5
    torch.testing.assert_close(five, torch.cat((w, w[:, :2]), dim=1) * 0.6)
    # a constant image gives the same stem response as the RGB original
    x = torch.ones(1, 6, 9, 9)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, adapt_stem_channels(w, 6)),
                               torch.nn.functional.conv2d(x[:, :3], w))


def test_state_dict_mismatch_summary():
    own = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}
    assert state_dict_mismatch_summary(own, dict(own)) is None
    text = state_dict_mismatch_summary(own, {"a": torch.zeros(2), "b": torch.zeros(4), "d": torch.zeros(1)})
    assert text == "1 missing keys ['c'], 1 unexpected keys ['d'], 1 shape mismatches ['b']"


def test_argument_and_input_checks():
    check_positive_int("features", 3)
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(ValueError, match="features must be a positive integer"):
            check_positive_int("features", bad)
    check_network_input(torch.zeros(1, 2, 16, 32), "Net", 2, 2, 16)
    with pytest.raises(ValueError, match=r"Net\(spatial_dims=2\) expects a 4D input"):
        check_network_input(torch.zeros(2, 16, 32), "Net", 2, 2, 16)
    with pytest.raises(ValueError, match="Net expects 2 input channels, got 3"):
        check_network_input(torch.zeros(1, 3, 16, 32), "Net", 2, 2, 16)
    with pytest.raises(ValueError, match="divisible by 16; got \\(16, 24\\)"):
        check_network_input(torch.zeros(1, 2, 16, 24), "Net", 2, 2, 16)
