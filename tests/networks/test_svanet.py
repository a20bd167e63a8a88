"""Tests for :class:`svseg.networks.svanet.SvANet` through the shared network tester.

All inputs are synthetic random tensors (shape / behaviour tests only). The parameter pins are
the authors' counts (``../shared/reference/figures.md`` section 1: the model built by the
authors' code with the ``shell/main.sh`` arguments), total and per module.
"""
from __future__ import annotations

import pytest
import torch

from svseg.networks import SvANet
from svseg.networks import svanet as svanet_module
from svseg.networks.blocks import ResNetEncoder
from svseg.networks.svanet import AssembleFormer, CSLayer, MoCAttention
from tests.networks.base import BadArgs, NetCase, NetworkTester, ParamPin, count_parameters, rejected_kwargs

# the authors' count per module (figures.md section 1), SvANet(2, 3, 2)
_AUTHORS_2D_2CLASS = {
    "encoder": 23_508_032,
    "encoder.layer1": 215_808,
    "encoder.layer2": 1_219_584,
    "encoder.layer3": 7_098_368,
    "encoder.layer4": 14_964_736,
    "conv_b.1": 231_202,
    "conv_b.2": 3_677_314,
    "conv_b.3": 14_694_658,
    "conv_b.4": 58_749_442,
    "conv_r.12": 296_448,
    "conv_r.13": 929_536,
    "conv_r.14": 2_974_208,
    "conv_r.23": 1_838_080,
    "conv_r.24": 5_644_288,
    "conv_r.34": 7_346_176,
    "link_head": 50_814_600,
    "aspp": 31_725_568,
    "classifier": 4_738,
    "drop_r": 0,
}

# reduced-width configurations (svseg's width knob; no published counterpart) keep tests fast
_SMALL = dict(base_width=8, aspp_channels=32)


class TestSvANet(NetworkTester):
    network_class = SvANet
    cases = [
        NetCase(
            "2d_w8_1ch_3class_96x64",
            dict(spatial_dims=2, in_channels=1, out_channels=3, img_size=96, **_SMALL),
            (3, 1, 96, 64),
            (3, 3, 96, 64),
        ),
        NetCase(
            "2d_w16_start_stage2_64x128",
            dict(spatial_dims=2, in_channels=3, out_channels=2, fg_start_stage=2, base_width=16, aspp_channels=64),
            (2, 3, 64, 128),
            (2, 2, 64, 128),
        ),
        NetCase(
            "2d_start_stage4_single_branch_32x64",
            dict(spatial_dims=2, in_channels=3, out_channels=4, fg_start_stage=4, **_SMALL),
            (2, 3, 32, 64),
            (2, 4, 32, 64),
        ),
        # the authors' configuration (full width, 202 M parameters) at a small input
        NetCase(
            "2d_paper_default_64x64",
            dict(spatial_dims=2, in_channels=3, out_channels=2),
            (2, 3, 64, 64),
            (2, 2, 64, 64),
            atol=1e-4,
        ),
        NetCase(
            "3d_w8_32x32x64",
            dict(spatial_dims=3, in_channels=1, out_channels=2, img_size=64, base_width=8, aspp_channels=16),
            (2, 1, 32, 32, 64),
            (2, 2, 32, 32, 64),
        ),
    ]
    param_pins = [
        ParamPin("authors_2d_2class", dict(spatial_dims=2, in_channels=3, out_channels=2), 202_434_290, _AUTHORS_2D_2CLASS),
        # svseg's own reduced 3D variant (no published reference): pinned so that changes are deliberate
        ParamPin("svseg_3d_w8", dict(spatial_dims=3, in_channels=1, out_channels=2, base_width=8, aspp_channels=16), 6_904_570),
    ]
    invalid_kwargs = rejected_kwargs(
        spatial_dims=[1], in_channels=[0], out_channels=[-2, 2.0], fg_start_stage=[5, 0], img_size=[0],
        svattn_divisor=[0], moc_pool_res=[(), (1, 0)], aspp_rates=[(12, 0, 36)], aspp_dropout=[1.0],
        cross_drop_rate=[-0.1], num_attn_blocks=[0], base_width=[12], pretrained=[3],
    ) + [
        BadArgs("pretrained_3d", dict(spatial_dims=3, pretrained=True), "pretrained"),
        BadArgs("pretrained_reduced_width", dict(base_width=8, pretrained=True), "base_width"),
    ]
    export_method = "export"
    export_case = 0


_TRAIN_KW = dict(spatial_dims=2, in_channels=3, out_channels=2, img_size=64, **_SMALL)


def _train_forward(net: torch.nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        return net(x)


def test_train_randomness_follows_torch_seed():
    torch.manual_seed(0)
    # no dropout / stochastic depth: the only randomness left is the paper's (MoC + SvAttn masks)
    net = SvANet(**_TRAIN_KW, aspp_dropout=0.0, cross_drop_rate=0.0).train()
    x = torch.randn(2, 3, 64, 64)
    a = _train_forward(net, x, 1)
    b = _train_forward(net, x, 1)
    c = _train_forward(net, x, 2)
    assert torch.equal(a, b), "the same torch seed must reproduce a train-mode forward"
    assert not torch.allclose(a, c), "different seeds must give different train-mode outputs"
    net.eval()
    d = _train_forward(net, x, 1)
    e = _train_forward(net, x, 2)
    assert torch.equal(d, e), "eval mode must not depend on the RNG"


def test_svattn_masks_are_disjoint_and_cover_the_grid():
    torch.manual_seed(0)
    layer = CSLayer(2, 8, 16, num_blocks=3, pool_size=8)
    assert sorted(layer.mask_grid.unique().tolist()) == [1, 2, 3, 4]
    m1 = layer.sample_masks()
    assert m1.shape == (4, 8, 8)
    assert set(m1.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(m1.sum(0), torch.ones(8, 8)), "masks must be disjoint and cover every cell"
    # each call shuffles the cells; the number of cells per label is kept
    m2 = layer.sample_masks()
    assert not torch.equal(m1, m2)
    counts = torch.stack([(layer.mask_grid == k).sum() for k in range(1, 5)]).sort().values
    assert torch.equal(m2.sum((1, 2)).long().sort().values, counts)


def test_svattn_eval_is_the_mask_free_average():
    torch.manual_seed(0)
    layer = CSLayer(2, 8, 16, num_blocks=2, pool_size=4).eval()
    x = torch.randn(2, 8, 32, 32)
    with torch.no_grad():
        out = layer(x)
        feats = [x]
        for conv in layer.convs:
            feats.append(conv(feats[-1]))
        pooled = [sq(torch.nn.functional.adaptive_avg_pool2d(f, 4)) for f, sq in zip(feats, layer.squeezes)]
        gate = torch.sigmoid((sum(pooled) / 3).mean((2, 3), keepdim=True))
    torch.testing.assert_close(out, feats[-1] * gate)
    assert out.shape == (2, 16, 8, 8)


def test_moc_attention_train_and_eval():
    torch.manual_seed(0)
    moc = MoCAttention(2, 16, pool_res=(1,))
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        ref = x * moc.se(x.mean((2, 3), keepdim=True))
        # pool resolution 1: the pixel shuffle does not change the global mean
        torch.testing.assert_close(moc.train()(x), ref)
        torch.testing.assert_close(moc.eval()(x), ref)
        moc3 = MoCAttention(2, 16, pool_res=(3,)).train()
        moc3.se.load_state_dict(moc.se.state_dict())
        outs = {tuple(moc3(x)[0, :, 0, 0].tolist()) for _ in range(6)}
    # resolution 3: a random one of nine sub-region means, so different draws differ
    assert len(outs) > 1
    # the hidden width rule max(make_divisible(C / 4, 8), 32)
    assert moc.se[0].conv.out_channels == 32
    assert MoCAttention(2, 512).se[0].conv.out_channels == 128


def test_encoder_layout_matches_torchvision():
    torchvision = pytest.importorskip("torchvision")
    enc = ResNetEncoder(2, 3)
    tv = torchvision.models.resnet50(weights=None)
    tv_keys = {k: v.shape for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in enc.state_dict().items()} == tv_keys
    # the authors' stage-1 "Conv1" (7x7 conv + BN): 9,536 parameters
    assert count_parameters(enc.conv1) + count_parameters(enc.bn1) == 9_536
    assert enc.out_channels == [64, 256, 512, 1024, 2048]
    # SvANet builds it with the authors' BaseConv2d batch norm (eps 1e-3) in every layer
    svanet_bns = [m for m in SvANet(**_TRAIN_KW).encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(svanet_bns) == 53 and all(m.eps == 1e-3 for m in svanet_bns)


def test_pretrained_local_state_dict(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(3)
    tv_state = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50_synthetic.pth"  # random (synthetic) weights saved by the test
    torch.save(tv_state, path)
    net = SvANet(spatial_dims=2, in_channels=3, out_channels=2, pretrained=str(path), **{"aspp_channels": 16})
    got = net.encoder.state_dict()
    for k, v in got.items():
        assert torch.equal(v, tv_state[k]), k
    del net
    # one input channel: conv1 is the sum over the RGB filters
    net1 = SvANet(spatial_dims=2, in_channels=1, out_channels=2, pretrained=path, aspp_channels=16)
    torch.testing.assert_close(net1.encoder.conv1.weight, tv_state["conv1.weight"].sum(1, keepdim=True))
    del net1
    # a wrapped and "module."-prefixed checkpoint loads as well
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in tv_state.items()}}, wrapped)
    net2 = SvANet(pretrained=wrapped, aspp_channels=16)
    assert torch.equal(net2.encoder.layer4[2].conv3.weight, tv_state["layer4.2.conv3.weight"])


def test_pretrained_true_uses_torchvision_weights(monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(4)
    state = torchvision.models.resnet50(weights=None).state_dict()
    calls = []

    def fake():  # stands in for the (network) download of ResNet50_Weights.IMAGENET1K_V2
        calls.append(1)
        return state

    monkeypatch.setattr(svanet_module, "torchvision_resnet50_state_dict", fake)
    net = SvANet(pretrained=True, aspp_channels=16)
    assert calls == [1]
    assert torch.equal(net.encoder.conv1.weight, state["conv1.weight"])


def test_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained"):
        SvANet(pretrained=tmp_path / "missing.pth", aspp_channels=16)
    wrong = tmp_path / "not_resnet50.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, wrong)
    with pytest.raises(ValueError, match="ResNet-50"):
        SvANet(pretrained=wrong, aspp_channels=16)


def test_input_size_must_be_multiple_of_32():
    torch.manual_seed(0)
    net = SvANet(**_TRAIN_KW).eval()
    with pytest.raises(ValueError, match="multiple of 32"):
        net(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="4D input"):
        net(torch.randn(1, 3, 64, 64, 64))


def test_a_few_training_steps_lower_the_loss():
    """The network learns: a few steps of CE on a synthetic target lower the loss."""
    torch.manual_seed(0)
    net = SvANet(**_TRAIN_KW, aspp_dropout=0.0, cross_drop_rate=0.0).train()
    x = torch.randn(2, 3, 64, 64)
    y = (x[:, :1] > 0).long()[:, 0]  # synthetic label
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.slow
def test_paper_configuration_at_512():
    """The authors' build at their 512 x 512 input: eval logits at full size (about 1 GB, tens of seconds)."""
    torch.manual_seed(0)
    net = SvANet(spatial_dims=2, in_channels=3, out_channels=2).eval()
    x = torch.randn(1, 3, 512, 512)  # synthetic image
    with torch.no_grad():
        out = net(x)
    assert out.shape == (1, 2, 512, 512)
    assert torch.isfinite(out).all()
    pool_sizes = {k: layer.pool_size for k, layer in net.conv_r.items()}
    # SvAttn pool sizes max(512 // 2**(stage + blocks) // 4, 4) of the authors' build
    assert pool_sizes == {"12": 32, "13": 16, "14": 8, "23": 16, "24": 8, "34": 8}


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_assembleformer_patch_unfold_fold(spatial_dims):
    block = AssembleFormer(spatial_dims, 8)
    x = torch.randn((2, 4) + (6, 4, 8)[:spatial_dims])
    patches = block.to_patches(x)
    assert patches.shape == (2, 4, 2**spatial_dims, x[0, 0].numel() // 2**spatial_dims)
    torch.testing.assert_close(block.from_patches(patches, x.shape[2:]), x, rtol=0, atol=0)
    if spatial_dims == 2:
        # the same (B, C, pixel-in-patch, patch) layout as the authors' F.unfold with 2x2 patches
        ref = torch.nn.functional.unfold(x, kernel_size=2, stride=2).reshape(2, 4, 4, -1)
        torch.testing.assert_close(patches, ref, rtol=0, atol=0)
