"""Tests for :class:`svseg.networks.sa2net.SA2Net` through the shared network tester.

Inputs are synthetic random tensors (shape/structure tests only). Parameter pins come from
``../shared/reference/figures.md`` section 4 (the authors' *used* parameters, per module).
"""
from __future__ import annotations

import pytest
import torch

from svseg.networks import SA2Net
from tests.networks.base import NetCase, NetworkTester, ParamPin, eval_and_train_outputs, rejected_kwargs

# the authors' used parameters per top-level module (figures.md section 4), 1 class
_USED_2D_1CLASS = {
    "inc": 1_920,
    "down1": 221_952,
    "down2": 886_272,
    "down3": 3_542_016,
    "down4": 4_721_664,
    # 1,053,316 minus the unused dwconv3x3_1/dwconv5x5_1 (4 x 8,960)
    "bottleneck": 1_017_476,
    "side_conv2": 73_792,
    "side_conv3": 147_520,
    "side_conv4": 294_976,
    "side_conv5": 2_359_808,
    # the authors' totals minus the unused AG_new.weight Sequential of each up-block
    "up4": 7_355_907 - 2_884_608,
    "up3": 1_859_331 - 721_408,
    "up2": 475_011 - 180_480,
    "up1": 170_115 - 45_184,
    "outc4": 65,
    "outc3": 65,
    "outc2": 129,
    "outc1": 257,
}


class TestSA2Net(NetworkTester):
    network_class = SA2Net
    cases = [
        # the paper's configuration (base width 64), small non-square input, batch 2
        NetCase(
            "2d_default_48x80",
            dict(spatial_dims=2, in_channels=3, out_channels=1),
            (2, 3, 48, 80),
            (2, 1, 48, 80),
            [(2, 1, 48, 80)] * 4,
        ),
        NetCase(
            "2d_f16_2class_32x48",
            dict(spatial_dims=2, in_channels=1, out_channels=2, features=16),
            (3, 1, 32, 48),
            (3, 2, 32, 48),
            [(3, 2, 32, 48)] * 4,
        ),
        NetCase(
            "2d_no_deep_supervision",
            dict(spatial_dims=2, in_channels=3, out_channels=3, features=8, deep_supervision=False),
            (2, 3, 32, 32),
            (2, 3, 32, 32),
            (2, 3, 32, 32),
        ),
        NetCase(
            "3d_f8_16x32x16",
            dict(spatial_dims=3, in_channels=1, out_channels=2, features=8),
            (2, 1, 16, 32, 16),
            (2, 2, 16, 32, 16),
            [(2, 2, 16, 32, 16)] * 4,
        ),
    ]
    param_pins = [
        ParamPin("authors_1class", dict(spatial_dims=2, in_channels=3, out_channels=1), 19_296_596, _USED_2D_1CLASS),
        ParamPin(
            "authors_2class",
            dict(spatial_dims=2, in_channels=3, out_channels=2),
            19_297_112,
            {"outc4": 130, "outc3": 130, "outc2": 258, "outc1": 514, "bottleneck": 1_017_476},
        ),
        # svseg's own 3D variant (no published reference): pinned so that changes are deliberate
        ParamPin("svseg_3d_default", dict(spatial_dims=3, in_channels=1, out_channels=2), 57_642_712),
    ]
    invalid_kwargs = rejected_kwargs(
        spatial_dims=[1], in_channels=[0], out_channels=[-1], features=[0, 8.5], gate_kernel_size=[4],
        mlp_ratio=[0], ffn_expansion=[0],
    )
    export_method = "export"
    export_case = 1


@pytest.mark.parametrize(
    "shape, match",
    [((1, 3, 40, 48), "divisible by 16"), ((1, 3, 32, 50), "divisible by 16"), ((1, 2, 32, 32), "input channels"), ((3, 32, 32), "4D")],
)
def test_bad_input_raises(shape, match):
    net = SA2Net(spatial_dims=2, in_channels=3, out_channels=1, features=4).eval()
    with pytest.raises(ValueError, match=match):
        net(torch.zeros(*shape))


def test_eval_output_is_first_train_output_and_logits():
    """Eval mode returns the outc4 map, i.e. the first train-mode element, as raw logits."""
    torch.manual_seed(0)
    net = SA2Net(spatial_dims=2, in_channels=3, out_channels=1, features=8)
    with torch.no_grad():
        net.outc4.bias.fill_(5.0)  # logits: the output must follow the bias past 1 (no sigmoid)
    x = torch.randn(2, 3, 32, 32)
    # train-mode structure with BN kept in eval mode: same numbers for the main head
    ev, tr = eval_and_train_outputs(net, x)
    assert isinstance(tr, tuple) and len(tr) == 4
    torch.testing.assert_close(tr[0], ev)
    # auxiliary heads are different maps, and nothing is squashed by a sigmoid
    assert not torch.allclose(tr[0], tr[1])
    assert ev.min() > 1.0


def test_gate_only_decoder_ignores_nothing():
    """The AuA up-block output depends on the decoder feature (through the gate) and the skip."""
    from svseg.networks.sa2net import AuAUpBlock

    torch.manual_seed(0)
    blk = AuAUpBlock(2, 8, 8, 4).eval()
    g = torch.randn(1, 8, 4, 4)
    s = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        base = blk(g, s)
        assert not torch.allclose(blk(torch.randn_like(g), s), base)
        assert not torch.allclose(blk(g, s + 1.0), base)
    # no concatenation: the first conv after the gate sees only the skip channels
    assert blk.convs[0].conv.in_channels == 8
