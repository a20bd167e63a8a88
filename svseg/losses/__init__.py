"""Losses used by the svseg networks' paper recipes, one module per paper.

Every loss is a ``torch.nn.Module`` called as ``loss(prediction, target)`` where
``prediction`` is exactly what the network returns in train mode (a tensor, or the tuple/list
of deep-supervision / auxiliary outputs) and ``target`` is an integer label map of shape
``(B, 1, *spatial)`` (float or integer dtype, as MONAI transforms produce). It returns a
scalar tensor. This lets MONAI's ``SupervisedTrainer`` call any of them unchanged.

Modules: :mod:`.afma` (AFMA, Sang et al.), :mod:`.sa2net` (SA2-Net, Fiaz et al.), :mod:`.msga`
(MSGA, Sinha & Dolz), :mod:`.msa2net` (MSA2Net, Kolahi et al.), :mod:`.svanet` (SvANet, Dai et
al.) and :mod:`.targets` (the label-map conversion they share).
"""
from __future__ import annotations

from .afma import AFMALoss, afma_gold_attention
from .msa2net import BoundaryDoULoss
from .msga import MSGALoss
from .sa2net import DeepSupervisionDiceBCELoss
from .svanet import LabelCrossEntropyLoss
from .targets import as_index_target

__all__ = [
    "AFMALoss",
    "afma_gold_attention",
    "DeepSupervisionDiceBCELoss",
    "MSGALoss",
    "BoundaryDoULoss",
    "LabelCrossEntropyLoss",
    "as_index_target",
]
