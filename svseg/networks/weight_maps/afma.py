"""AFMA: the authors' ``My_<host>`` models (``models/<host>/<host>_model.py``) names -> :class:`svseg.networks.AFMA`.

Only names change; every tensor keeps its shape. The authors keep the across feature map attention inside
their ResNet encoder (``Encoder_channelatt_img``) and the output correction in each decoder's
``segmentation`` head; svseg keeps both apart (``attention``, ``head``). The ResNet encoder itself carries
torchvision's names on both sides (smp's ResNet encoder is a torchvision ResNet).

Shapes: the authors always build 12 attention channels (``get_encoder(classes_num=12)``) and ``classes``
output channels; svseg builds K = ``out_channels`` of both. Their weights therefore fit only an svseg
network with ``out_channels=12`` built with 12 classes on their side; any other K fails at the strict load
with the shape mismatch named (no slicing: that would not be the authors' model).

Checked by ``tests/fidelity/test_afma_authors.py`` for the paper's default host (U-Net, ResNet-50,
att_depth 2). The decoder names of smp 0.2 (the authors' copy) and smp 0.6 (svseg's hosts) agree for the
U-Net; for the other hosts the decoder keys pass through unchanged and a difference shows at the strict load.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from svseg.networks.weight_maps import rename_keys

__all__ = ["to_svseg", "UNUSED", "RULES"]

#: the authors' parameters their forward never calls: none (every built parameter gets a gradient; the
#: correction's all-ones pooling conv is created inside ``SegmentationHead.forward``, not in the state)
UNUSED: tuple[str, ...] = ()

#: (authors' name pattern, svseg name) rules, applied in order to every key; the first hit wins
RULES = (
    # the attention's layers live in the authors' encoder; conv_feamap is a Sequential of one 1x1 conv there
    (r"^encoder\.conv_img\.", "attention.conv_img."),
    (r"^encoder\.conv_feamap\.0\.", "attention.conv_feamap."),
    (r"^encoder\.resolution_trans\.", "attention.resolution_trans."),
    # every host's decoder holds the correcting head as ``segmentation`` (its one conv is ``conv_x``)
    (r"^decoder\.segmentation\.", "head."),
)


def to_svseg(net: torch.nn.Module, state_dict: Mapping[str, Any]) -> dict:
    """The authors' ``My_<host>`` ``state_dict`` as the ``state_dict`` of the svseg ``AFMA`` ``net``."""
    return rename_keys(state_dict, RULES, UNUSED)
