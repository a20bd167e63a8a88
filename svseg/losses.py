"""Losses used by the svseg networks' paper recipes.

Every loss is a ``torch.nn.Module`` called as ``loss(prediction, target)`` where
``prediction`` is exactly what the network returns in train mode (a tensor, or the tuple/list
of deep-supervision / auxiliary outputs) and ``target`` is an integer label map of shape
``(B, 1, *spatial)`` (float or integer dtype, as MONAI transforms produce). It returns a
scalar tensor. This lets MONAI's ``SupervisedTrainer`` call any of them unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

__all__: list[str] = []


def _as_index_target(target: torch.Tensor) -> torch.Tensor:
    """(B, 1, *spatial) or (B, *spatial) label map -> (B, *spatial) int64 class indices."""
    if target.ndim >= 3 and target.shape[1] == 1:
        target = target[:, 0]
    return target.round().long() if target.is_floating_point() else target.long()


# --- sections below are appended by each network's author; keep them independent ---
