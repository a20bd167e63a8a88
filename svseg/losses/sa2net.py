"""SA2-Net (Fiaz et al., BMVC 2023): DeepSupervisionDiceBCELoss.

Reproduces the authors' ``MoNuSeg_GLaS/train_model.py`` + ``utils.WeightedDiceBCE``
(https://github.com/mustansarfiaz/SA2-Net); see :class:`DeepSupervisionDiceBCELoss`.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .targets import as_index_target

__all__ = ["DeepSupervisionDiceBCELoss"]


def _sa2_weighted_dice(prob: torch.Tensor, truth: torch.Tensor, smooth: float) -> torch.Tensor:
    """The authors' ``WeightedDiceLoss(weights=[0.5, 0.5])`` (squared-denominator Dice).

    With equal weights the per-pixel weight is the constant 0.5 applied to both ``p`` and ``t``:
    ``1 - (2 * sum(0.25 p t) + s) / (sum(0.25 p^2) + sum(0.25 t^2) + s)`` per sample (and here per
    channel), averaged. ``prob``/``truth``: ``(B, K, N)``.
    """
    p = 0.5 * prob
    t = 0.5 * truth
    inter = (p * t).sum(-1)
    union = (p * p).sum(-1) + (t * t).sum(-1)
    return (1.0 - (2.0 * inter + smooth) / (union + smooth)).mean()


def _sa2_balanced_bce_with_logits(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The authors' ``WeightedBCE(weights=[0.5, 0.5])``, computed from logits.

    ``0.5 * mean(BCE over foreground pixels) + 0.5 * mean(BCE over background pixels)`` over the
    whole batch (each mean is 0 when its set is empty, as in the authors' ``+1e-12`` guard).
    """
    bce = F.binary_cross_entropy_with_logits(logits, truth, reduction="none")
    pos = (truth > 0.5).to(bce.dtype)
    neg = (truth < 0.5).to(bce.dtype)
    return 0.5 * (pos * bce).sum() / (pos.sum() + 1e-12) + 0.5 * (neg * bce).sum() / (neg.sum() + 1e-12)


class DeepSupervisionDiceBCELoss(nn.Module):
    """SA2-Net's training loss: ``0.5 Dice + 0.5 BCE`` on each deep-supervision output, summed.

    The authors (``MoNuSeg_GLaS/train_model.py`` + ``utils.WeightedDiceBCE``) apply
    ``WeightedDiceBCE(dice_weight=0.5, BCE_weight=0.5)`` to each of the 4 outputs of ``MyNet``
    and add the four terms with equal weights. The Dice term is the authors'
    ``WeightedDiceLoss`` (squared denominator, smooth 1e-5, per sample then averaged) and the BCE
    term their class-balanced ``WeightedBCE`` (mean over foreground pixels and mean over
    background pixels, weighted 0.5/0.5).

    Differences from the authors' code, all deliberate:

    - ``prediction`` holds **logits** (svseg networks apply no activation); the sigmoid is
      applied here, and the BCE uses ``binary_cross_entropy_with_logits`` (same value, stable).
    - ``target`` is an integer label map ``(B, 1, *spatial)``; for one output channel the
      foreground is ``target > 0``.
    - For ``out_channels > 1`` (the authors use MONAI/Awesome-U-Net ``DiceLoss`` there) this
      loss uses softmax probabilities against the one-hot target in the same Dice formula
      (averaged over samples and classes) plus the standard multi-class cross-entropy.
    - An eval-mode prediction (one tensor) is accepted and gives the single-output loss.

    Args:
        dice_weight: weight of the Dice term (authors: 0.5).
        bce_weight: weight of the BCE / CE term (authors: 0.5).
        output_weights: one weight per deep-supervision output (authors: all 1); ``None`` means
            all ones.
        smooth: Dice smoothing (authors: 1e-5).
    """

    def __init__(
        self,
        dice_weight: float = 0.5,
        bce_weight: float = 0.5,
        output_weights: Sequence[float] | None = None,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        if dice_weight < 0 or bce_weight < 0:
            raise ValueError(f"dice_weight and bce_weight must be >= 0, got {dice_weight} and {bce_weight}.")
        if output_weights is not None and (len(output_weights) == 0 or any(w < 0 for w in output_weights)):
            raise ValueError(f"output_weights must be a non-empty sequence of non-negative numbers, got {output_weights!r}.")
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}.")
        self.dice_weight = float(dice_weight)
        self.bce_weight = float(bce_weight)
        self.output_weights = None if output_weights is None else [float(w) for w in output_weights]
        self.smooth = float(smooth)

    def single(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Dice + BCE of one output ``(B, K, *spatial)`` against ``(B, 1, *spatial)`` labels."""
        index = as_index_target(target)
        if tuple(index.shape) != (logits.shape[0],) + tuple(logits.shape[2:]):
            raise ValueError(
                f"prediction {tuple(logits.shape)} and target {tuple(target.shape)} differ in batch or spatial size."
            )
        b, k = logits.shape[:2]
        if k == 1:
            truth = (index > 0).to(logits.dtype).unsqueeze(1)
            prob = torch.sigmoid(logits)
            class_term = _sa2_balanced_bce_with_logits(logits, truth)
        else:
            if index.min() < 0 or index.max() >= k:
                raise ValueError(f"target labels must lie in [0, {k - 1}] for {k} output channels.")
            truth = F.one_hot(index, k).movedim(-1, 1).to(logits.dtype)
            prob = torch.softmax(logits, dim=1)
            class_term = F.cross_entropy(logits, index)
        dice = _sa2_weighted_dice(prob.reshape(b, k, -1), truth.reshape(b, k, -1), self.smooth)
        return self.dice_weight * dice + self.bce_weight * class_term

    def forward(self, prediction: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        outputs = [prediction] if isinstance(prediction, torch.Tensor) else list(prediction)
        if not outputs:
            raise ValueError("prediction must be a tensor or a non-empty sequence of tensors.")
        weights = self.output_weights
        if weights is None:
            weights = [1.0] * len(outputs)
        elif len(outputs) == 1 and len(weights) != 1:
            weights = [weights[0]]  # eval-mode single tensor: the main output's weight
        if len(weights) != len(outputs):
            raise ValueError(f"got {len(outputs)} outputs but {len(weights)} output_weights.")
        return sum(w * self.single(o, target) for w, o in zip(weights, outputs))
