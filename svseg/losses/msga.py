"""MSGA (Sinha & Dolz, IEEE JBHI 2020): MSGALoss.

Reproduces the authors' ``lossG`` in ``src/main.py`` (https://github.com/sinAshish/Multi-Scale-Attention);
see :class:`MSGALoss`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .targets import as_index_target

__all__ = ["MSGALoss"]


class MSGALoss(nn.Module):
    """The multi-scale guided attention training loss (the authors' ``lossG`` in ``src/main.py``).

    ``loss = ce_weight * sum_8 CE(prediction_j, target)
    + semantic_weight * sum_4 MSE(semantic vector step 1, semantic vector step 2)
    + reconstruction_weight * sum_8 MSE(semantic-module input, its reconstruction)``
    with the authors' weights 1, 0.25 and 0.1. ``prediction`` is the 32-tuple returned by
    :class:`svseg.networks.MSGA` in train mode: ``[0:8]`` semantic vectors (pairs ``(0, 1)``,
    ``(2, 3)``, ``(4, 5)``, ``(6, 7)`` are step 1 / step 2 of one scale), ``[8:16]`` module inputs,
    ``[16:24]`` reconstructions (element ``16 + i`` pairs with ``8 + i``), ``[24:32]`` logits.
    As in the authors' code nothing is detached: the MSE terms also pull on their targets.

    ``target`` is an integer label map ``(B, 1, *spatial)`` (the authors' gray-level PNG
    decoding is a data-loading matter). A single tensor (eval-mode output) gives only the
    cross-entropy term, weighted by ``ce_weight``.

    Args:
        ce_weight: weight of the 8 cross-entropy terms (authors: 1).
        semantic_weight: weight of the 4 semantic-vector MSE terms (authors: 0.25).
        reconstruction_weight: weight of the 8 reconstruction MSE terms (authors: 0.1).
    """

    num_outputs = 32

    def __init__(self, ce_weight: float = 1.0, semantic_weight: float = 0.25, reconstruction_weight: float = 0.1) -> None:
        super().__init__()
        for name, value in (
            ("ce_weight", ce_weight),
            ("semantic_weight", semantic_weight),
            ("reconstruction_weight", reconstruction_weight),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        self.ce_weight = float(ce_weight)
        self.semantic_weight = float(semantic_weight)
        self.reconstruction_weight = float(reconstruction_weight)

    @staticmethod
    def _ce(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if tuple(index.shape) != (logits.shape[0],) + tuple(logits.shape[2:]):
            raise ValueError(
                f"prediction {tuple(logits.shape)} and target (B, 1, *spatial) {tuple(index.shape)} differ in size."
            )
        return F.cross_entropy(logits, index)

    def forward(self, prediction: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
        index = as_index_target(target)
        if isinstance(prediction, torch.Tensor):
            return self.ce_weight * self._ce(prediction, index)
        outs = list(prediction)
        if len(outs) != self.num_outputs:
            raise ValueError(f"MSGALoss expects the 32-element train-mode output of MSGA, got {len(outs)} elements.")
        ce = sum(self._ce(p, index) for p in outs[24:32])
        sem = sum(F.mse_loss(outs[2 * i], outs[2 * i + 1]) for i in range(4))
        rec = sum(F.mse_loss(outs[8 + i], outs[16 + i]) for i in range(8))
        return self.ce_weight * ce + self.semantic_weight * sem + self.reconstruction_weight * rec
