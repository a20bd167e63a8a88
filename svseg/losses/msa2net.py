"""MSA2Net (Kolahi et al., BMVC 2024): Boundary Difference over Union loss.

Reproduces ``utils.BoundaryDoULoss`` of the authors' code (https://github.com/xmindflow/MSA-2Net,
after Sun et al., MICCAI 2023); see :class:`BoundaryDoULoss`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .targets import as_index_target

__all__ = ["BoundaryDoULoss"]


class BoundaryDoULoss(nn.Module):
    """Boundary DoU loss (Sun et al., MICCAI 2023) exactly as MSA2Net's ``utils.BoundaryDoULoss``.

    The authors train MSA2Net with this loss alone (their CE/Dice terms are computed but not
    back-propagated). For each class ``i`` (background included) with softmax probabilities
    ``p`` and one-hot target ``g`` over the whole batch:

    * ``S`` = number of foreground pixels of ``g``; ``C`` = number of its boundary pixels, i.e.
      foreground pixels whose cross-shaped 3x3 neighbourhood (zero padded) is not all foreground;
    * ``alpha = 1 - (C + eps) / (S + eps)``, then ``alpha = min(2 * alpha - 1, alpha_max)``;
    * ``loss_i = (sum p^2 + sum g^2 - 2 sum pg + eps) / (sum p^2 + sum g^2 - (1 + alpha) sum pg + eps)``.

    The result is the mean of ``loss_i`` over all classes (an absent class with ``S = 0``
    contributes exactly 1, as in the authors' code). For 3D inputs (an svseg extension; the
    authors' loss is 2D) the kernel is the 3D cross (6 neighbours + centre).

    Args:
        num_classes: expected number of prediction channels; ``None`` infers it from the prediction.
        smooth: the ``eps`` above (authors: 1e-5).
        alpha_max: truncation of ``alpha`` (authors: 0.8).

    Call ``loss(prediction, target)`` with logits ``(B, K, *spatial)`` (2D or 3D) and an integer
    label map ``(B, 1, *spatial)`` or ``(B, *spatial)``; returns a scalar.
    """

    def __init__(self, num_classes: int | None = None, smooth: float = 1e-5, alpha_max: float = 0.8) -> None:
        super().__init__()
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2):
            raise ValueError(f"num_classes must be an int >= 2 or None, got {num_classes!r}.")
        if smooth <= 0:
            raise ValueError(f"smooth must be > 0, got {smooth}.")
        self.num_classes = num_classes
        self.smooth = float(smooth)
        self.alpha_max = float(alpha_max)

    @staticmethod
    def boundary_count(onehot: torch.Tensor) -> torch.Tensor:
        """Number of foreground pixels whose cross neighbourhood is not fully foreground.

        ``onehot``: a binary map ``(B, H, W)`` or ``(B, H, W, D)``; outside the image counts as
        background (zero padding). Returns a 0-d integer tensor.
        """
        nd = onehot.ndim - 1
        k = torch.zeros((3,) * nd, dtype=onehot.dtype, device=onehot.device)
        centre = (1,) * nd
        k[centre] = 1
        for axis in range(nd):
            for off in (0, 2):
                idx = list(centre)
                idx[axis] = off
                k[tuple(idx)] = 1
        conv = F.conv2d if nd == 2 else F.conv3d
        y = conv(onehot.unsqueeze(1), k[None, None], padding=1)[:, 0] * onehot
        full = float(2 * nd + 1)
        return torch.count_nonzero((y != 0) & (y != full))

    def class_loss(self, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The term ``loss_i`` of one class: probabilities ``score`` and binary ``target`` of the same shape.

        Both are ``(B, *spatial)`` over the whole batch; a class with no foreground gives exactly 1.
        """
        s = self.smooth
        c = self.boundary_count(target)
        n = torch.count_nonzero(target)
        alpha = 1 - (c + s) / (n + s)
        alpha = torch.clamp(2 * alpha - 1, max=self.alpha_max)
        intersect = torch.sum(score * target)
        y_sum = torch.sum(target * target)
        z_sum = torch.sum(score * score)
        return (z_sum + y_sum - 2 * intersect + s) / (z_sum + y_sum - (1 + alpha) * intersect + s)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not isinstance(prediction, torch.Tensor):
            raise TypeError(f"BoundaryDoULoss expects one logits tensor, got {type(prediction).__name__}.")
        if prediction.ndim not in (4, 5):
            raise ValueError(f"prediction must be (B, K, H, W) or (B, K, H, W, D), got shape {tuple(prediction.shape)}.")
        k = prediction.shape[1]
        if self.num_classes is not None and k != self.num_classes:
            raise ValueError(f"prediction has {k} channels but num_classes={self.num_classes}.")
        index = as_index_target(target)
        if tuple(index.shape) != (prediction.shape[0],) + tuple(prediction.shape[2:]):
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in batch or spatial size."
            )
        probs = torch.softmax(prediction.float(), dim=1)
        loss = prediction.new_zeros((), dtype=torch.float32)
        for i in range(k):
            loss = loss + self.class_loss(probs[:, i], (index == i).float())
        return loss / k
