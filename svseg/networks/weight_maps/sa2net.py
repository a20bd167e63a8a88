"""SA2-Net: the authors' ``MyNet`` (``MoNuSeg_GLaS/nets/sasanet.py``) names -> :class:`svseg.networks.SA2Net`.

Only names change; every tensor keeps its shape (both sides are plain ``Conv2d``/``BatchNorm2d`` and the
same ConvNeXt-style channel LayerNorm). The modules the authors build but never call are dropped by name
(:data:`UNUSED`); svseg does not build them.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from svseg.networks.weight_maps import rename_keys

__all__ = ["to_svseg", "UNUSED", "RULES"]

#: the authors' modules that their forward never calls (svseg does not build them)
UNUSED = (
    r"Multi_scale_Fuse[123]\.",  # defined in MyNet.__init__, never used in MyNet.forward
    r"up[1-4]\.AG\.weight\.",  # AG_new.weight: its only use is a commented-out line of AG_new.forward
    r"bottleneck\.gcn[1-4]\.dwconv(3x3|5x5)_1\.",  # Mixed_Scal_FeedForward: both calls are commented out
)

#: (authors' name pattern, svseg name) rules, applied in order to every remaining key
RULES = (
    # encoder: the authors' DownBlock keeps its two ConvBatchNorm in ``nConvs``; svseg calls it ``convs``
    (r"^(down[1-4])\.nConvs\.", r"\1.convs."),
    # decoder: UpBlock_attention.nConvs -> AuAUpBlock.convs, AG -> gate
    (r"^(up[1-4])\.nConvs\.", r"\1.convs."),
    # AG_new.dwconv (LN, 1x1, GELU, depthwise k) is the gate path, same Sequential indices
    (r"^(up[1-4])\.AG\.dwconv\.", r"\1.gate.gate_path."),
    # AG_new.conv is a Sequential holding one depthwise 5x5; svseg holds the conv itself
    (r"^(up[1-4])\.AG\.conv\.0\.", r"\1.gate.skip_path."),
    (r"^(up[1-4])\.AG\.(psi|proj)\.", r"\1.gate.\2."),
    # SA2 block: per-scale modules numbered 1..4 -> ModuleLists indexed 0..3
    (r"^bottleneck\.gcn([1-4])\.dwconv3x3\.", lambda m: f"bottleneck.local_attn.{int(m[1]) - 1}.dwconv3."),
    (r"^bottleneck\.gcn([1-4])\.dwconv5x5\.", lambda m: f"bottleneck.local_attn.{int(m[1]) - 1}.dwconv5."),
    (r"^bottleneck\.gcn([1-4])\.", lambda m: f"bottleneck.local_attn.{int(m[1]) - 1}."),
    (r"^bottleneck\.mlp([1-4])\.", lambda m: f"bottleneck.mlp.{int(m[1]) - 1}."),
    (r"^bottleneck\.conv([1-4])\.", lambda m: f"bottleneck.proj.{int(m[1]) - 1}."),
    # the fusion BatchNorm and 3x3 convolution of the global scale attention
    (r"^bottleneck\.bn\.", "bottleneck.norm."),
    (r"^bottleneck\.conv\.", "bottleneck.fuse."),
)


def to_svseg(net: torch.nn.Module, state_dict: Mapping[str, Any]) -> dict:
    """The authors' ``MyNet`` ``state_dict`` as the ``state_dict`` of the svseg ``SA2Net`` ``net``.

    ``inc``, ``side_conv2-5``, ``outc1-4`` and ``bottleneck.qconv`` carry the same names on both sides. With
    ``deep_supervision=False`` svseg has no ``outc1-3``: they are dropped too.
    """
    unused = list(UNUSED)
    if not getattr(net, "deep_supervision", True):
        unused.append(r"^outc[123]\.")  # heads not built without deep supervision
    return rename_keys(state_dict, RULES, unused)
