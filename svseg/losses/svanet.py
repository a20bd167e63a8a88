"""SvANet (Dai et al., TNNLS 2026, arXiv:2407.07720): cross-entropy on an integer label map.

The authors (https://github.com/anthonyweidai/SvANet) train SvANet with plain cross-entropy,
ignore index 255 (their padding label); see :class:`LabelCrossEntropyLoss`.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LabelCrossEntropyLoss"]


class LabelCrossEntropyLoss(nn.Module):
    """Cross-entropy on logits ``(B, K, *S)`` against an integer label map ``(B, 1, *S)`` (SvANet's loss).

    A tuple or list prediction contributes its first element (the main logits); float labels are
    rounded.

    Args:
        weight: optional per-class weights.
        ignore_index: label value excluded from the loss (the authors use 255 for padding).
    """

    def __init__(self, weight: Sequence[float] | None = None, ignore_index: int = 255) -> None:
        super().__init__()
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32))
        self.ignore_index = int(ignore_index)

    def forward(self, prediction: Any, target: torch.Tensor) -> torch.Tensor:
        logits = prediction[0] if isinstance(prediction, (tuple, list)) else prediction
        if target.ndim == logits.ndim:
            target = target[:, 0]
        target = target.round().long() if target.is_floating_point() else target.long()
        return F.cross_entropy(logits, target, weight=self.weight, ignore_index=self.ignore_index)
