"""MSGA: the authors' ``DAF_stack`` (``src/models/my_stacked_danet.py``) names -> :class:`svseg.networks.MSGA`.

Only names change; every tensor keeps its shape. The authors number modules per scale in two different
ways, and the rules below follow which feature each module is applied to in their ``forward``:

* ``down1-4``, ``predict1-4``, ``predict1_2-4_2``, ``pam_attention_<step>_<k>``, ``cam_attention_<step>_<k>``:
  ``k`` is the scale (``down<k>``), so svseg's index is ``k - 1``;
* ``conv_sem_<step>_<k>`` and ``conv8_<k>`` / ``conv8_1<k>``: ``k = 1`` belongs to scale 4 (``down4``), ``k = 4``
  to scale 1, so svseg's index is ``4 - k``.

The modules the authors build but never call are dropped by name (:data:`UNUSED`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from svseg.networks.weight_maps import rename_keys

__all__ = ["to_svseg", "UNUSED", "RULES"]

#: the authors' modules that ``DAF_stack.forward`` never calls (svseg does not build them)
UNUSED = (
    r"conv6_[1-4]\.",  # Dropout2d + 1x1 conv heads, defined only
    r"conv7_[1-4]\.",  # idem
    r"attention[1-4]\.",  # MultiConv(128, 64) with a Softmax2d, defined only
    r"refine[1-4]\.",  # MultiConv(128, 64), defined only
)


def _scale_index(m: re.Match) -> str:
    return str(int(m["k"]) - 1)


def _reversed_index(m: re.Match) -> str:
    return str(4 - int(m["k"]))


#: (authors' name pattern, svseg name or function of the match) rules, applied in order; the first hit wins
RULES = (
    # backbone: ResNeXt101 keeps torchvision's children as layer0 = (conv1, bn1, relu) and
    # layer1 = (maxpool, layer1); layer2-4 are torchvision's; svseg keeps torchvision's names
    (r"^resnext\.layer0\.0\.", lambda m: "backbone.conv1."),
    (r"^resnext\.layer0\.1\.", lambda m: "backbone.bn1."),
    (r"^resnext\.layer1\.1\.", lambda m: "backbone.layer1."),
    (r"^resnext\.layer(?P<k>[234])\.", lambda m: f"backbone.layer{m['k']}."),
    # multi-scale features and heads: one ModuleList per kind, indexed by scale
    (r"^down(?P<k>[1-4])\.", lambda m: f"down.{_scale_index(m)}."),
    (r"^predict(?P<k>[1-4])_2\.", lambda m: f"predict_refined.{_scale_index(m)}."),
    (r"^predict(?P<k>[1-4])\.", lambda m: f"predict.{_scale_index(m)}."),
    # MultiConv keeps its layers in ``fuse_attn``; svseg's MultiConv is the Sequential itself
    (r"^fuse1\.fuse_attn\.", lambda m: "fuse."),
    # PAM_CAM_Layer keeps its layers in ``attn``; svseg's AttentionLayer is the Sequential itself
    (r"^(?P<kind>pam|cam)_attention_(?P<step>[12])_(?P<k>[1-4])\.attn\.",
     lambda m: f"steps.{int(m['step']) - 1}.{m['kind']}.{_scale_index(m)}."),
    # one semantic module per step (``semanticModule_<step>_1``), shared by the four scales; its
    # encoder/decoder blocks keep their layers in ``encode``/``decode``
    (r"^semanticModule_(?P<step>[12])_1\.(?P<blk>enc[12]|dec[12])\.(encode|decode)\.",
     lambda m: f"steps.{int(m['step']) - 1}.semantic.{m['blk']}."),
    (r"^conv_sem_(?P<step>[12])_(?P<k>[1-4])\.", lambda m: f"steps.{int(m['step']) - 1}.conv_sem.{_reversed_index(m)}."),
    # conv8_1..4 close step 1 (attention1_4..1_1), conv8_11..14 step 2 (refine4..1)
    (r"^conv8_1(?P<k>[1-4])\.", lambda m: f"steps.1.conv_out.{_reversed_index(m)}."),
    (r"^conv8_(?P<k>[1-4])\.", lambda m: f"steps.0.conv_out.{_reversed_index(m)}."),
)


def to_svseg(net: torch.nn.Module, state_dict: Mapping[str, Any]) -> dict:
    """The authors' ``DAF_stack`` ``state_dict`` as the ``state_dict`` of the svseg ``MSGA`` ``net``."""
    return rename_keys(state_dict, RULES, UNUSED)
