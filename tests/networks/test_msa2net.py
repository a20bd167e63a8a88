"""MSA2Net tests (shared network tester + MSA2Net-specific checks).

All inputs are synthetic random tensors (shape/gradient/format tests only). Parameter pins are
the authors' *used* counts from ``../shared/reference/figures.md`` section 2.
"""
from __future__ import annotations

import pytest
import torch

from svseg.networks import MSA2Net
from svseg.networks.msa2net import MultiScaleGatedAttn, PatchExpand
from tests.networks.base import NetCase, NetworkTester, ParamPin, count_parameters, rejected_kwargs

# figures.md section 2: per-module parameter counts of the modules the released code executes
_AUTHORS_SUBMODULES = {
    "backbone": 64_126_044,  # timm maxvit_rmlp_small_rw_224 incl. the final 768-ch norm
    "decoder_3": 1_180_416,
    "decoder_3.layer_up": 1_180_416,
    "decoder_2": 5_568_007 - 1_780_231,  # the authors' decoder_2 minus its never-called MASAG
    "decoder_2.x1_linear": 147_840,
    "decoder_2.ag_attn_norm": 768,
    "decoder_2.layer_up": 295_296,
    "decoder_2.layer_lka_1": 1_671_936,
    "decoder_2.layer_lka_2": 1_671_936,
    "decoder_1": 1_420_039,
    "decoder_1.x1_linear": 37_056,
    "decoder_1.ag_attn": 447_751,
    "decoder_1.ag_attn_norm": 384,
    "decoder_1.layer_up": 73_920,
    "decoder_1.layer_lka_1": 430_464,
    "decoder_1.layer_lka_2": 430_464,
    "decoder_0": 499_024,
    "decoder_0.x1_linear": 9_312,
    "decoder_0.ag_attn": 113_287,
    "decoder_0.ag_attn_norm": 192,
    "decoder_0.layer_up": 147_648,
    "decoder_0.last_layer": 873,
    "decoder_0.layer_lka_1": 113_856,
    "decoder_0.layer_lka_2": 113_856,
}


class TestMSA2Net(NetworkTester):
    network_class = MSA2Net
    cases = [
        NetCase(
            name="224_gray_9cls_b2",
            kwargs=dict(spatial_dims=2, in_channels=1, out_channels=9, img_size=224),
            input_shape=(2, 1, 224, 224),
            eval_shape=(2, 9, 224, 224),
        ),
        NetCase(
            name="224_rgb_2cls_b2",
            kwargs=dict(spatial_dims=2, in_channels=3, out_channels=2, img_size=224),
            input_shape=(2, 3, 224, 224),
            eval_shape=(2, 2, 224, 224),
        ),
        # another size (window 2) and the svseg 1x1 input adapter for 4 channels; small so the
        # export round trip is cheap
        NetCase(
            name="64_4ch_adapter_3cls_b2",
            kwargs=dict(spatial_dims=2, in_channels=4, out_channels=3, img_size=64),
            input_shape=(2, 4, 64, 64),
            eval_shape=(2, 3, 64, 64),
        ),
    ]
    export_method = "export"  # torch.export works (saved and loaded again)
    export_case = 2
    param_pins = [
        ParamPin("authors_used_9cls", dict(out_channels=9), 71_013_299, submodules=_AUTHORS_SUBMODULES),
        # 3-channel input uses the same weights; 2 classes: last_layer 96*2+2 instead of 96*9+9
        ParamPin("rgb_2cls", dict(in_channels=3, out_channels=2), 71_013_299 - 873 + 194),
        # the encoder/decoder sizes do not depend on img_size (MaxViT rel-pos MLPs are size free)
        ParamPin("img256", dict(img_size=256), 71_013_299),
        # svseg adapter for 4 channels: 1x1 conv 4->3 (12 + 3)
        ParamPin("adapter_4ch", dict(in_channels=4), 71_013_299 + 15, submodules={"input_adapter": 15}),
        # the paper variant: decoder_2 gets MASAG(384) and two DualTransformerBlocks instead of two LKA blocks
        ParamPin(
            "paper_variant",
            dict(variant="paper"),
            71_013_299 - 2 * 1_671_936 + 1_780_231 + 2 * 3_578_504,
            submodules={"decoder_2.ag_attn": 1_780_231, "decoder_2.tran_layer1": 3_578_504},
        ),
    ]
    invalid_kwargs = rejected_kwargs(
        spatial_dims=[3], img_size=[200, (224, 224)], in_channels=[0], out_channels=[0], variant=["v2"], pretrained=[3],
    )


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return MSA2Net(in_channels=1, out_channels=2, img_size=64).eval()


def test_no_unused_modules_are_built(small_net):
    """The never-called modules of the released code are absent (no dead weights)."""
    assert not hasattr(small_net.decoder_3, "x1_linear")
    assert not hasattr(small_net.decoder_3, "ag_attn")
    assert not hasattr(small_net.decoder_2, "ag_attn")
    assert isinstance(small_net.decoder_1.ag_attn, MultiScaleGatedAttn)
    assert isinstance(small_net.decoder_0.ag_attn, MultiScaleGatedAttn)
    assert small_net.input_adapter is None


def test_gray_input_is_repeated_to_rgb(small_net):
    """in_channels=1 feeds the backbone the gray image repeated on 3 channels (as the authors)."""
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        out = small_net(x)
        feats = small_net.encode(x.repeat(1, 3, 1, 1))
    assert [tuple(f.shape) for f in feats] == [(1, 96, 16, 16), (1, 192, 8, 8), (1, 384, 4, 4), (1, 768, 2, 2)]
    assert out.shape == (1, 2, 64, 64)


def test_skip_fusion_uses_raw_view_not_permute(small_net):
    """Released quirk: the (B, H, W, C) skip is read as (B, C, H, W) by a raw reshape.

    Feeding decoder_2 a skip whose tokens are already "pre-scrambled" gives a different result from
    feeding it a properly permuted one; the reference value is built by hand here.
    """
    dec = small_net.decoder_2
    b, h, w, c = 1, 4, 4, 384
    x1 = torch.randn(b, h * w, c)
    skip = torch.randn(b, h, w, c)
    with torch.no_grad():
        got = dec(x1, skip)
        gate = dec.x1_linear(x1).reshape(b, c, h, w)
        fused = gate + skip.reshape(b, c, h, w)  # raw view, not skip.permute(0, 3, 1, 2)
        y = dec.ag_attn_norm(fused.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        y = dec.layer_lka_2(dec.layer_lka_1(y))
        ref = dec.layer_up(y.reshape(b, h * w, c))
        fused_clean = gate + skip.permute(0, 3, 1, 2)
        y2 = dec.ag_attn_norm(fused_clean.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        clean = dec.layer_up(dec.layer_lka_2(dec.layer_lka_1(y2)).flatten(2).transpose(1, 2))
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(got, clean, atol=1e-3)


def test_patch_expand_shapes_and_layout():
    pe2 = PatchExpand((3, 5), 8, scale=2)
    assert pe2(torch.randn(2, 15, 8)).shape == (2, 60, 4)
    pe4 = PatchExpand((2, 2), 8, scale=4)
    assert pe4(torch.randn(1, 4, 8)).shape == (1, 64, 8)
    # "b h w (p1 p2 c) -> b (h p1) (w p2) c": a 1x2 grid of 2-channel tokens, expanded to 4 values
    # each (c = 1), must land as the 2x4 grid [[a0 a1 b0 b1], [a2 a3 b2 b3]] in row-major token order
    pe = PatchExpand((1, 2), 2, scale=2)
    pe.norm = torch.nn.Identity()
    with torch.no_grad():
        pe.expand.weight.copy_(torch.tensor([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0], [3.0, 13.0]]))
        out = pe(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]))
    assert out.flatten().tolist() == [0.0, 1.0, 10.0, 11.0, 2.0, 3.0, 12.0, 13.0]


def test_decoder_init_is_xavier(small_net):
    """Decoder Linear/Conv2d biases are zero after the authors' Xavier-uniform init."""
    for name, m in small_net.named_modules():
        if name.startswith("decoder") and isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)) and m.bias is not None:
            assert torch.count_nonzero(m.bias) == 0, name


@pytest.mark.parametrize(
    "shape, match",
    [((1, 1, 96, 96), "img_size"), ((1, 3, 64, 64), "in_channels"), ((1, 64, 64), r"\(B, C, H, W\)")],
)
def test_bad_input_raises(small_net, shape, match):
    with pytest.raises(ValueError, match=match):
        small_net(torch.zeros(shape))


def test_pretrained_local_file(tmp_path):
    """A local timm MaxViT weight file (with classifier keys, as timm ships it) loads strictly."""
    torch.manual_seed(1)
    src = MSA2Net(img_size=64, out_channels=2)
    state = {k: v.half() for k, v in src.backbone.state_dict().items()}
    state["head.fc.weight"] = torch.zeros(1000, 768, dtype=torch.half)  # ignored classifier keys
    state["head.fc.bias"] = torch.zeros(1000, dtype=torch.half)
    path = tmp_path / "maxvit_rmlp_small_rw_224_sw-6ef0ae4f.pth"
    torch.save(state, path)
    del src
    net = MSA2Net(img_size=64, out_channels=2, pretrained=str(path))
    key = "stages.2.blocks.3.attn_block.attn.qkv.weight"
    torch.testing.assert_close(net.backbone.state_dict()[key], state[key].float())

    state.pop(key)
    bad = tmp_path / "broken.pth"
    torch.save(state, bad)
    del state, net
    with pytest.raises(ValueError, match="broken.pth.*1 missing keys"):
        MSA2Net(img_size=64, out_channels=2, pretrained=bad)
    with pytest.raises(FileNotFoundError, match="does_not_exist.pth"):
        MSA2Net(img_size=64, out_channels=2, pretrained=tmp_path / "does_not_exist.pth")


@pytest.mark.slow
def test_eval_output_448():
    net = MSA2Net(in_channels=1, out_channels=9, img_size=448).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, 448, 448))
    assert out.shape == (1, 9, 448, 448)
    assert count_parameters(net) == 71_013_299


def test_load_authors_checkpoint(tmp_path, small_net):
    """The authors' Msa2Net key layout (backbone.backbone.*, plus never-called modules) loads.

    The file is synthesised from a random svseg model (no authors' weights are available here);
    the mapping was checked end to end against the authors' code outside the test suite.
    """
    state = {}
    for k, v in small_net.state_dict().items():
        key = "backbone." + k if k.startswith("backbone.") else k
        state["module." + key] = v.half() if v.is_floating_point() else v  # DataParallel prefix
    # modules the authors build but never call are ignored
    state["module.backbone.conv.0.weight"] = torch.zeros(3, 1, 1, 1)
    state["module.decoder_3.x1_linear.weight"] = torch.zeros(768, 768)
    state["module.decoder_2.ag_attn.bn.weight"] = torch.zeros(384)
    path = tmp_path / "msa2net_synapse.pth"
    torch.save(state, path)
    del state
    net = MSA2Net(in_channels=1, out_channels=2, img_size=64).eval()
    net.load_authors_checkpoint(path)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), small_net(x), atol=5e-2, rtol=1e-2)  # fp16 copy of the weights
        assert torch.equal(net.decoder_0.last_layer.weight, small_net.decoder_0.last_layer.weight.half().float())
    wrong = MSA2Net(in_channels=1, out_channels=9, img_size=64)
    with pytest.raises(ValueError, match="msa2net_synapse.pth.*shape mismatches"):
        wrong.load_authors_checkpoint(path)
