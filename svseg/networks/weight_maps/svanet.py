"""The authors' SvANet names (``lib/model`` of anthonyweidai/SvANet) -> :class:`svseg.networks.SvANet`.

The authors' model is ``SegEncoderDecoder``: ``Encoder`` (their ResNet-50 of ``BaseConv2d`` blocks, each a
``Conv`` + ``Bn`` pair) and ``SegHead`` (DeepLabv3 head with the feature-guide branches). Every parameter
and buffer they build takes part in the forward pass at the paper configuration, so nothing is dropped:
the two state dicts have the same 1,148 entries and only the names differ (no layout differs: their
transposed convolution is a ``nn.ConvTranspose2d`` like svseg's).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = ["to_svseg"]


# (pattern, replacement) in the order they are applied to every name; the authors number their layers
# from 1 (Conv1, Squeeze1, UpLink1), svseg's ModuleList entries from 0
_RULES: list[tuple[str, object]] = [
    # encoder: their ResNet names each conv/BN pair ConvK.Conv / ConvK.Bn, torchvision (and svseg) convK / bnK
    (r"^Encoder\.Conv1\.Conv\.", "encoder.conv1."),
    (r"^Encoder\.Conv1\.Bn\.", "encoder.bn1."),
    # their Layer1 is Sequential(max pool, Sequential(blocks)): its blocks sit one level deeper
    (r"^Encoder\.Layer1\.1\.(\d+)\.", r"Encoder.Layer1.\1."),
    (r"^Encoder\.Layer(\d)\.(\d+)\.Conv(\d)\.Conv\.", r"encoder.layer\1.\2.conv\3."),
    (r"^Encoder\.Layer(\d)\.(\d+)\.Conv(\d)\.Bn\.", r"encoder.layer\1.\2.bn\3."),
    # torchvision's downsample is Sequential(conv, bn); theirs one BaseConv2d
    (r"^Encoder\.Layer(\d)\.(\d+)\.Downsample\.Conv\.", r"encoder.layer\1.\2.downsample.0."),
    (r"^Encoder\.Layer(\d)\.(\d+)\.Downsample\.Bn\.", r"encoder.layer\1.\2.downsample.1."),
    # head: svseg has no SegHead level; branch blocks ConvB<b> -> conv_b.<b> (ModuleDict keyed like theirs)
    (r"^SegHead\.ConvB(\d)\.", r"conv_b.\1."),
    # cross-scale layers Convr<bt>: their Conv<i>/Squeeze<i> attributes (from 1) -> convs/squeezes lists (from 0)
    (r"^SegHead\.Convr(\d\d)\.Conv(?P<n>\d+)\.", lambda m: f"conv_r.{m.group(1)}.convs.{int(m.group('n')) - 1}."),
    (r"^SegHead\.Convr(\d\d)\.Squeeze(?P<n>\d+)\.", lambda m: f"conv_r.{m.group(1)}.squeezes.{int(m.group('n')) - 1}."),
    # top-down link: UpLink<i>/CatLinkConv<i>/ViTLayer<i> attributes (from 1) -> three lists (from 0)
    (r"^SegHead\.LinkHead\.UpLink(?P<n>\d+)\.TPConv\.", lambda m: f"link_head.up_links.{int(m.group('n')) - 1}.tp_conv."),
    (r"^SegHead\.LinkHead\.CatLinkConv(?P<n>\d+)\.", lambda m: f"link_head.cat_link_convs.{int(m.group('n')) - 1}."),
    (r"^SegHead\.LinkHead\.ViTLayer(?P<n>\d+)\.", lambda m: f"link_head.vit_layers.{int(m.group('n')) - 1}."),
    # ASPP: their image-pool branch nests its conv as AsppPool.conv_1x1; svseg's ASPPPooling holds it as conv
    (r"^SegHead\.Aspp\.aspp_layer\.Convs\.(\d)\.AsppPool\.conv_1x1\.", r"aspp.convs.\1.conv."),
    (r"^SegHead\.Aspp\.aspp_layer\.Convs\.", "aspp.convs."),
    (r"^SegHead\.Aspp\.aspp_layer\.Project\.", "aspp.project."),
    (r"^SegHead\.Classifier\.Classifier\.", "classifier."),
    # inside the blocks: CamelCase attribute names -> svseg's snake_case
    (r"\.Bottleneck\.", ".bottleneck."),
    (r"\.SELayer\.", ".se."),
    (r"\.ViTLayer\.", ".vit."),
    # their LocalRep is (conv-bn-act, act placeholder, 1x1 conv): svseg's Sequential has no middle entry
    (r"\.LocalRep\.2\.", ".local_rep.1."),
    (r"\.LocalRep\.", ".local_rep."),
    (r"\.GlobalRep\.", ".global_rep."),
    (r"\.PreNormAttn\.", ".pre_norm_attn."),
    (r"\.PreNormFfn\.", ".pre_norm_ffn."),
    (r"\.ConvProj\.", ".conv_proj."),
    # BasicBlock's Sequential is called Conv there and conv here
    (r"\.Conv\.(\d+)\.", r".conv.\1."),
    # the attention projections and FFN convs are plain convolutions in svseg (theirs: BaseConv2d without norm)
    (r"\.(qkv_proj|out_proj)\.Conv\.", r".\1."),
    (r"\.pre_norm_ffn\.(\d+)\.Conv\.", r".pre_norm_ffn.\1."),
    # the remaining BaseConv2d leaves: Conv/Bn -> ConvNormAct's conv/norm
    (r"\.Conv\.(weight|bias)$", r".conv.\1"),
    (r"\.Bn\.(weight|bias|running_mean|running_var|num_batches_tracked)$", r".norm.\1"),
]
_COMPILED = [(re.compile(p), r) for p, r in _RULES]


def svseg_name(name: str) -> str:
    """One authors' parameter/buffer name -> svseg's (a name no rule knows is returned unchanged, so a
    checkpoint of another network fails the strict load with its own names listed)."""
    for pattern, replacement in _COMPILED:
        name = pattern.sub(replacement, name)
    return name


def to_svseg(net: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' SvANet ``state_dict`` -> the ``state_dict`` of ``net`` (``svseg.networks.SvANet`` at the
    matching configuration); ``net`` is not modified."""
    del net  # names only: every tensor keeps its layout
    return {svseg_name(k): v for k, v in state_dict.items()}
