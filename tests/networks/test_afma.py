"""AFMA (Sang et al., TPAMI 2023) through the shared network tester, plus AFMA-specific checks.

All inputs are synthetic random tensors (shape / gradient / export behaviour only).

Parameter pins come from the authors' implementation (ShengtianSang/AFMA) measured in
``../shared/reference/figures.md`` section 3: the authors' counts at K = 3 classes with their
fixed 12 attention channels. svseg builds K attention channels, so at K classes

    svseg = authors(K=3) - (12 - K) * (9 * 64 + 1)   # conv_img's last conv, 3x3 64 -> K (+bias)
                         - (12 - K) * (C_d + 1)       # conv_feamap, 1x1 C_d -> K (+bias)
                         + (K - 3) * head_per_class   # the segmentation conv, (c_in * k * k + 1) per class

where C_d is the encoder's channel count at att_depth d and head_per_class depends on the
decoder (``HEAD_PER_CLASS``). At K = 12 the first two terms vanish (svseg = the authors' model
at K = 12); at K = 3 the third vanishes.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from svseg.networks.afma import AFMA, AFMAHead, AFMAttention, afma_pool_depth
from svseg.networks.blocks import extract_patches, fold_patches
from tests.networks.base import BadArgs, NetCase, NetworkTester, ParamPin

# ------------------------------------------------------------------ authors' figures (K = 3)
# figures.md section 3 table: (encoder, decoder, att_depth) -> authors' parameter count at K=3
AUTHORS_K3 = {}
for _enc, _unet, _rest in (
    ("resnet34", (24_493_835, 24_493_835, 24_494_603, 24_496_139, 24_499_211),
     dict(manet=31_841_099, deeplabv3=26_064_795, unetplusplus=26_135_691, fpn=23_212_827, linknet=21_829_179, pan=21_533_570)),
    ("resnet50", (32_578_571, 32_580_875, 32_583_947, 32_590_091, 32_602_379),
     dict(manet=147_499_763, deeplabv3=39_693_723, unetplusplus=49_045_131, fpn=26_175_771, linknet=31_237_323, pan=24_319_874, pspnet=29_877_403)),
    ("resnet101", (51_570_699, 51_573_003, 51_576_075, 51_582_219, 51_594_507),
     dict(manet=166_491_891, deeplabv3=58_685_851, unetplusplus=68_037_259, fpn=45_167_899, linknet=50_229_451, pan=43_312_002, pspnet=48_869_531)),
    ("resnet152", (67_214_347, 67_216_651, 67_219_723, 67_225_867, 67_238_155),
     dict(manet=182_135_539, deeplabv3=74_329_499, unetplusplus=83_680_907, fpn=60_811_547, linknet=65_873_099, pan=58_955_650, pspnet=64_513_179)),
):
    for _d, _n in enumerate(_unet, start=1):
        AUTHORS_K3[(_enc, "unet", _d)] = _n
    for _dec, _n in _rest.items():
        AUTHORS_K3[(_enc, _dec, 2)] = _n

# encoder channels at depth 0..5 (smp/torchvision ResNet)
ENCODER_CHANNELS = {
    "resnet34": (3, 64, 64, 128, 256, 512),
    "resnet50": (3, 64, 256, 512, 1024, 2048),
    "resnet101": (3, 64, 256, 512, 1024, 2048),
    "resnet152": (3, 64, 256, 512, 1024, 2048),
}
# segmentation conv parameters per class: c_in * k * k + 1 (the authors' kernel sizes)
HEAD_PER_CLASS = {
    "unet": 16 * 3 * 3 + 1,
    "unetplusplus": 16 * 1 * 1 + 1,
    "fpn": 128 * 1 * 1 + 1,
    "deeplabv3": 256 * 1 * 1 + 1,
    "linknet": 32 * 1 * 1 + 1,
    "manet": 16 * 3 * 3 + 1,
    "pan": 32 * 3 * 3 + 1,
    "pspnet": 512 * 3 * 3 + 1,
}


def expected_params(encoder: str, decoder: str, att_depth: int, k: int) -> int:
    c_d = ENCODER_CHANNELS[encoder][att_depth]
    return (
        AUTHORS_K3[(encoder, decoder, att_depth)]
        - (12 - k) * (9 * 64 + 1)
        - (12 - k) * (c_d + 1)
        + (k - 3) * HEAD_PER_CLASS[decoder]
    )


def test_expected_params_arithmetic_written_out():
    """The formula reproduces the figures the issue states by hand."""
    # K = 12: 32,580,875 + 9 * (16*9 + 1) = 32,580,875 + 1,305 = 32,582,180
    assert expected_params("resnet50", "unet", 2, 12) == 32_580_875 + 1_305 == 32_582_180
    # K = 3: 32,580,875 - 9 * 577 - 9 * 257 = 32,580,875 - 5,193 - 2,313 = 32,573,369
    assert expected_params("resnet50", "unet", 2, 3) == 32_580_875 - 7_506 == 32_573_369


def _pin(encoder: str, decoder: str, att_depth: int, k: int) -> ParamPin:
    kwargs = dict(spatial_dims=2, in_channels=3, out_channels=k, decoder=decoder, encoder_name=encoder, att_depth=att_depth)
    return ParamPin(f"{decoder}-{encoder}-d{att_depth}-K{k}", kwargs, expected_params(encoder, decoder, att_depth, k))


DECODERS_2D = ("unet", "unetplusplus", "fpn", "deeplabv3", "linknet", "manet", "pan", "pspnet")

# default run: the ResNet-50 row at K = 3, the Unet att_depth sweep, and the authors' K = 12 model
_DEFAULT_PINS = [
    ParamPin(
        "default-unet-resnet50-d2-K12-authors",
        dict(spatial_dims=2, in_channels=3, out_channels=12),
        32_582_180,
        # conv_img 9,472 + 6,924; conv_feamap 256*12+12 = 3,084; resolution_trans 2 * 100 * 200 = 40,000
        submodules={"attention": 16_396 + 3_084 + 40_000, "attention.resolution_trans": 40_000, "head": 16 * 9 * 12 + 12, "encoder": 23_508_032},
    )
]
_DEFAULT_PINS += [_pin("resnet50", dec, 2, 3) for dec in DECODERS_2D]
_DEFAULT_PINS += [_pin("resnet50", "unet", d, 3) for d in (1, 3, 4, 5)]
_DEFAULT_PINS += [_pin("resnet50", dec, 2, 12) for dec in ("unetplusplus", "pspnet")]

_SLOW_PINS = []
for _enc in ("resnet34", "resnet101", "resnet152"):
    _SLOW_PINS += [_pin(_enc, "unet", d, 3) for d in range(1, 6)]
    _SLOW_PINS += [_pin(_enc, dec, 2, 3) for dec in DECODERS_2D if (_enc, dec, 2) in AUTHORS_K3 and dec != "unet"]


def _case(name, input_shape, k=3, **kw):
    kwargs = dict(spatial_dims=len(input_shape) - 2, in_channels=input_shape[1], out_channels=k, encoder_name="resnet18")
    kwargs.update(kw)
    dec = kwargs.get("decoder", "unet")
    p = kwargs.get("patch_size", 10)
    d = kwargs.get("att_depth", 2)
    spatial = input_shape[2:]
    n_img = math.prod(s // p for s in spatial)
    n_feat = math.prod((s // 2 ** afma_pool_depth(dec, d)) // p for s in spatial)
    out = (input_shape[0], k) + tuple(spatial)
    return NetCase(name, kwargs, input_shape, out, [out, (input_shape[0], k, n_img, n_feat)])


class TestAFMA(NetworkTester):
    network_class = AFMA
    cases = [
        _case("unet-r18-64", (2, 1, 64, 64)),
        _case("unetplusplus-r18-64", (2, 1, 64, 64), decoder="unetplusplus"),
        _case("fpn-r18-64", (2, 1, 64, 64), decoder="fpn"),
        _case("deeplabv3-r18-d4-p4", (2, 1, 64, 64), decoder="deeplabv3", att_depth=4, patch_size=4),
        _case("linknet-r18-64", (2, 1, 64, 64), decoder="linknet"),
        _case("manet-r18-64", (2, 1, 64, 64), decoder="manet"),
        _case("pan-r18-128", (2, 1, 128, 128), decoder="pan"),
        _case("pspnet-r50-d5-p4", (2, 1, 64, 64), decoder="pspnet", encoder_name="resnet50", att_depth=5, patch_size=4),
        _case("unet-r18-d1-rgb-64x96-k4", (2, 3, 64, 96), k=4, att_depth=1),
        _case("unet-r18-d3-p4", (2, 1, 64, 64), att_depth=3, patch_size=4),
        _case("unet3d-r10-p4", (2, 1, 32, 32, 32), encoder_name="resnet10", patch_size=4),
    ]
    param_pins = _DEFAULT_PINS
    invalid_kwargs = [
        BadArgs("unknown-decoder", dict(decoder="segformer"), "decoder"),
        BadArgs("att-depth-0", dict(att_depth=0), "att_depth"),
        BadArgs("att-depth-6", dict(att_depth=6), "att_depth"),
        BadArgs("encoder-not-resnet", dict(encoder_name="efficientnet-b0"), "encoder_name"),
        BadArgs("encoder-resnext", dict(encoder_name="resnext50_32x4d"), "encoder_name"),
        BadArgs("patch-size-0", dict(patch_size=0), "patch_size"),
        BadArgs("patch-size-3d-too-big", dict(spatial_dims=3, patch_size=20, encoder_name="resnet18"), "patch_size"),
        BadArgs("smp-host-3d", dict(spatial_dims=3, decoder="fpn", encoder_name="resnet18"), "2D-only"),
        BadArgs("spatial-dims-1", dict(spatial_dims=1), "spatial_dims"),
        BadArgs("one-class", dict(out_channels=1), "out_channels"),
        BadArgs("pretrained-bad-type", dict(pretrained=3), "pretrained"),
    ]
    export_method = "export"
    export_case = 0


@pytest.mark.slow
class TestAFMASlowPins(NetworkTester):
    """The rest of the authors' table (ResNet-34/101/152): builds only, but large."""

    network_class = AFMA
    param_pins = _SLOW_PINS


# ------------------------------------------------------------------ AFMA-specific checks
def test_patches_match_unfold_fold_with_remainder():
    x = torch.randn(2, 1, 23, 31)
    p = 5
    ours = extract_patches(x, p)[:, 0]  # (B, N, p*p)
    ref = nn.Unfold(kernel_size=p, stride=p)(x).transpose(-1, -2)
    torch.testing.assert_close(ours, ref)
    back = fold_patches(ours.unsqueeze(1), p, (23, 31))
    ref_back = nn.Fold(output_size=(23, 31), kernel_size=p, stride=p)(ref.transpose(-1, -2))
    torch.testing.assert_close(back, ref_back)
    assert back[..., 20:, :].abs().sum() == 0 and back[..., :, 30:].abs().sum() == 0  # remainder: zeros


def _authors_reference(att: AFMAttention, head: AFMAHead, image, feature, dec_out, att_depth, pool_depth, p):
    """The authors' per-class loops (encoder_channelatt_img.py + SegmentationHead), written with
    nn.Unfold / nn.Fold and an all-ones depthwise conv, using the same weights."""
    unfold = nn.Unfold(kernel_size=(p, p), stride=(p, p))
    ini_img = att.conv_img(image)
    feamap = att.conv_feamap(feature) / (2**att_depth * 2**att_depth)
    attentions = []
    for i in range(feamap.size(1)):
        ui = att.resolution_trans(unfold(ini_img[:, i : i + 1]).transpose(-1, -2))
        uf = att.resolution_trans(unfold(feamap[:, i : i + 1]).transpose(-1, -2)).transpose(-1, -2)
        attentions.append(torch.unsqueeze(torch.matmul(ui, uf) / (p * p), 1))
    attentions = torch.cat(attentions, dim=1)

    k = head.conv_x.out_channels
    x = head.conv_x(dec_out)
    if head.upsampling > 1:
        x = nn.UpsamplingBilinear2d(scale_factor=head.upsampling)(x)
    ones = nn.Conv2d(k, k, kernel_size=2**pool_depth, stride=2**pool_depth, groups=k, bias=False)
    ones.weight = nn.Parameter(torch.ones(k, 1, 2**pool_depth, 2**pool_depth), requires_grad=False)
    fold = nn.Fold(output_size=x.shape[-2:], kernel_size=(p, p), stride=(p, p))
    onehot = torch.zeros(x.size()).scatter(1, torch.argmax(x, dim=1).unsqueeze(1), torch.ones(x.size()))
    arg_feamap = ones(onehot) / (2**pool_depth * 2**pool_depth)
    correction = []
    for i in range(k):
        nz = torch.unsqueeze(torch.count_nonzero(attentions[:, i : i + 1], dim=-1) + 0.00001, dim=-1)
        a = torch.matmul(attentions[:, i : i + 1] / nz, torch.unsqueeze(unfold(arg_feamap[:, i : i + 1]), 1).transpose(-1, -2))
        correction.append(fold(torch.squeeze(a, 1).transpose(-1, -2)))
    correction = torch.cat(correction, dim=1)
    return correction * x + x, attentions, x


@pytest.mark.parametrize("att_depth,pool_depth,upsampling,size", [(2, 2, 1, 45), (4, 3, 8, 64), (1, 1, 4, 48)])
def test_attention_and_correction_equal_authors_loops(att_depth, pool_depth, upsampling, size):
    torch.manual_seed(0)
    p, k = 3, 4
    att = AFMAttention(2, 2, 8, k, att_depth, p)
    head = AFMAHead(2, 6, k, kernel_size=3, upsampling=upsampling, pool_depth=pool_depth, patch_size=p)
    # make the attention dense enough that corrections are non-trivial
    with torch.no_grad():
        for lin in att.resolution_trans[:2]:
            lin.weight.abs_()
    image = torch.randn(2, 2, size, size)
    feature = torch.randn(2, 8, size // 2**pool_depth, size // 2**pool_depth)
    dec_out = torch.randn(2, 6, size // upsampling, size // upsampling)
    afma = att(image, feature)
    logits = head(dec_out, afma)
    ref_logits, ref_afma, uncorrected = _authors_reference(att, head, image, feature, dec_out, att_depth, pool_depth, p)
    torch.testing.assert_close(afma, ref_afma, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-6)
    assert (logits - uncorrected).abs().max() > 1e-3  # the correction is not trivially zero


def test_pool_depth_special_cases():
    # DeepLabV3 / PSPNet: output stride 8 -> the authors' att_depth >= 4 -> 3
    assert [afma_pool_depth("deeplabv3", d) for d in range(1, 6)] == [1, 2, 3, 3, 3]
    assert [afma_pool_depth("pspnet", d) for d in range(1, 6)] == [1, 2, 3, 3, 3]
    # PAN: output stride 16 -> att_depth 5 -> 4 (svseg; the authors' code fails there)
    assert [afma_pool_depth("pan", d) for d in range(1, 6)] == [1, 2, 3, 4, 4]
    assert [afma_pool_depth("unet", d) for d in range(1, 6)] == [1, 2, 3, 4, 5]


def test_pspnet_dilation_matches_torchvision():
    """The authors' PSPNet encoder: torchvision ResNet-50 with replace_stride_with_dilation=[F, T, T]."""
    from torchvision.models import resnet50

    tv = resnet50(replace_stride_with_dilation=[False, True, True])
    net = AFMA(decoder="pspnet", encoder_name="resnet50", out_channels=3)
    for name in ("layer3", "layer4"):
        ours = [(m.stride, m.dilation, m.padding) for m in getattr(net.encoder, name).modules() if isinstance(m, nn.Conv2d)]
        ref = [(m.stride, m.dilation, m.padding) for m in getattr(tv, name).modules() if isinstance(m, nn.Conv2d)]
        assert ours == ref, name


@pytest.mark.parametrize("kwargs,shape,match", [
    (dict(att_depth=3), (1, 1, 64, 64), "too small"),  # 64 / 2**3 = 8 < patch 10
    (dict(), (1, 1, 80, 80), "divisible"),  # smp hosts need multiples of 32
])
def test_input_that_does_not_fit_raises(kwargs, shape, match):
    net = AFMA(in_channels=1, out_channels=3, encoder_name="resnet18", **kwargs).eval()
    with pytest.raises(ValueError, match=match):
        net(torch.randn(*shape))


def test_pretrained_local_checkpoint(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    state = resnet18().state_dict()  # torchvision layout incl. fc.*
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    net = AFMA(in_channels=1, out_channels=3, encoder_name="resnet18", pretrained=str(path))
    torch.testing.assert_close(net.encoder.layer3[0].conv1.weight, state["layer3.0.conv1.weight"])
    # 1-channel stem: the RGB kernels summed (smp's rule)
    torch.testing.assert_close(net.encoder.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    assert net.attention.conv_img[0].in_channels == 1
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        AFMA(encoder_name="resnet18", pretrained=str(tmp_path / "missing.pth"))
    torch.save({"foo": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="pretrained"):
        AFMA(encoder_name="resnet18", pretrained=str(tmp_path / "bad.pth"))


def test_eval_returns_corrected_logits_train_returns_tuple():
    torch.manual_seed(0)
    net = AFMA(in_channels=1, out_channels=3, encoder_name="resnet18")
    x = torch.randn(2, 1, 64, 64)
    net.eval()
    with torch.no_grad():
        ev = net(x)
        feats = net.encoder(x)
        afma = net.attention(x, feats[2])
    assert isinstance(ev, torch.Tensor)
    # the correction is applied in eval mode too (and only where the AFMA is non-zero)
    torch.testing.assert_close(ev, net.head(net.decoder(feats), afma))
    assert afma.shape == (2, 3, 36, 1)
    net.train()
    out = net(x)
    assert isinstance(out, tuple) and len(out) == 2
