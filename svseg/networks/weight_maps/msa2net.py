"""The authors' MSA2Net names (``networks/msa2net.py`` of xmindflow/MSA-2Net, ``Msa2Net``) ->
:class:`svseg.networks.MSA2Net` (``variant="released"``, in_channels 1 or 3).

svseg's decoder modules carry the authors' names, and its backbone is timm's ``maxvit_rmlp_small_rw_224``
whose names equal the authors' copy of timm's MaxViT; so only one level is renamed and the modules the
released code builds but never calls are dropped, by name. No layout differs.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["to_svseg", "UNUSED_PREFIXES"]

#: built by the authors' released code, never called in its forward pass (docs/networks.md, 22,647,578
#: parameters): the backbone's 1->3 conv + BN (forward repeats grey input instead); decoder_3's fusion and
#: LKA blocks (the coarsest stage has no skip, it only expands); decoder_2's MASAG (the second, kept
#: definition of MyDecoderLayerDAEFormer fuses that stage by addition only)
UNUSED_PREFIXES = (
    "backbone.conv.",
    "decoder_3.x1_linear.",
    "decoder_3.ag_attn.",
    "decoder_3.ag_attn_norm.",
    "decoder_3.layer_lka_1.",
    "decoder_3.layer_lka_2.",
    "decoder_2.ag_attn.",
)


def to_svseg(net: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' ``Msa2Net`` ``state_dict`` -> the ``state_dict`` of ``net`` (``svseg.networks.MSA2Net``);
    ``net`` is not modified.

    ``variant="paper"`` calls MASAG in ``decoder_2`` and has DAEFormer blocks there, which the authors'
    released model does not hold: such a ``net`` fails the strict load with the missing names listed.
    """
    unused = UNUSED_PREFIXES if getattr(net, "variant", "released") == "released" else UNUSED_PREFIXES[:-1]
    mapped = {}
    for name, value in state_dict.items():
        if name.startswith(unused):
            continue
        # the authors wrap timm's MaxViT in MaxViT4Out_Small (its own attribute ``backbone``); svseg holds
        # the timm model directly as ``backbone``
        if name.startswith("backbone.backbone."):
            name = "backbone." + name[len("backbone.backbone."):]
        mapped[name] = value
    return mapped
