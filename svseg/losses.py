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


# --- AFMA (Sang et al., TPAMI 2023): 5 x class-weighted NLL + MSE to the gold AFMA ----------
_AFMA_DECODERS = ("unet", "unetplusplus", "fpn", "deeplabv3", "linknet", "manet", "pan", "pspnet")
# log2 of the encoder output stride of the dilated hosts (svseg.networks.afma.afma_pool_depth)
_AFMA_MAX_POOL_DEPTH = {"deeplabv3": 3, "pspnet": 3, "pan": 4}


def _afma_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, *S) -> non-overlapping patches (B, C, N, p**s), ordered as nn.Unfold, remainder dropped
    (the same layout as ``svseg.networks.afma.extract_patches``; kept here so the loss imports no network)."""
    b, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    s = len(spatial)
    grid = [int(n) // p for n in spatial]
    x = x[(slice(None), slice(None)) + tuple(slice(0, g * p) for g in grid)]
    shape = [b, c]
    for g in grid:
        shape += [g, p]
    perm = [0, 1] + [2 + 2 * i for i in range(s)] + [3 + 2 * i for i in range(s)]
    n = 1
    for g in grid:
        n *= g
    return x.reshape(shape).permute(perm).reshape(b, c, n, p**s)


def afma_gold_attention(onehot: torch.Tensor, pool_depth: int, patch_size: int) -> torch.Tensor:
    """The gold across feature map attention of a one-hot label map (authors' MyLoss_correction).

    ``onehot`` ``(B, K, *S)`` is average-pooled by ``2**pool_depth`` (the authors' all-ones
    depthwise conv divided by 4**d); per class, the label map's ``p x p`` patches
    ``(N_img, p²)`` times the pooled map's patches ``(p², N_feat)``, divided by p², give
    ``(B, K, N_img, N_feat)`` (``p**3`` patches in 3D; remainders dropped as ``nn.Unfold``).
    """
    import torch.nn.functional as F

    spatial_dims = onehot.ndim - 2
    pool = F.avg_pool2d if spatial_dims == 2 else F.avg_pool3d
    pooled = pool(onehot, 2**pool_depth)
    img = _afma_patches(onehot, patch_size)  # (B, K, N_img, P)
    fea = _afma_patches(pooled, patch_size)  # (B, K, N_feat, P)
    return torch.matmul(img, fea.transpose(-1, -2)) / float(patch_size**spatial_dims)


class AFMALoss(nn.Module):
    """AFMA training loss: ``nll_weight * NLL(log_softmax(logits), y; weight) + MSE(afma, gold)``.

    The authors' ``MyLoss_correction`` (utils/losses.py) with ``nll_weight=5``: the model output
    there is already log-softmax (``activation='logsoftmax2d'``); svseg networks return logits,
    so this loss applies ``log_softmax`` over the class axis. The gold AFMA is computed here from
    the integer target (:func:`afma_gold_attention`).

    Args:
        att_depth: the network's ``att_depth`` (1..5).
        patch_size: the network's ``patch_size``.
        decoder: the network's ``decoder``; DeepLabV3/PSPNet pool by at most 2**3 (the authors'
            main.py special case for att_depth >= 4), PAN by at most 2**4 (svseg's same rule),
            exactly as ``AFMA.pool_depth``.
        weight: optional per-class weights for the NLL term (the authors use the data set's
            class weights), a sequence or tensor of length K.
        nll_weight: factor of the NLL term (5 in the paper's code).
        mse_weight: factor of the MSE term (1 in the paper's code).

    Call: ``loss((logits (B, K, *S), afma (B, K, N_img, N_feat)), target (B, 1, *S))``.
    """

    def __init__(
        self,
        att_depth: int = 2,
        patch_size: int = 10,
        decoder: str = "unet",
        weight=None,
        nll_weight: float = 5.0,
        mse_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if decoder not in _AFMA_DECODERS:
            raise ValueError(f"decoder must be one of {_AFMA_DECODERS}, got {decoder!r}.")
        if isinstance(att_depth, bool) or not isinstance(att_depth, int) or not 1 <= att_depth <= 5:
            raise ValueError(f"att_depth must be an integer in 1..5, got {att_depth!r}.")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}.")
        self.att_depth = att_depth
        self.pool_depth = min(att_depth, _AFMA_MAX_POOL_DEPTH.get(decoder, 5))
        self.patch_size = patch_size
        self.nll_weight = float(nll_weight)
        self.mse_weight = float(mse_weight)
        w = None if weight is None else torch.as_tensor(weight, dtype=torch.float32).flatten()
        self.register_buffer("weight", w)

    def forward(self, prediction, target: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        if not isinstance(prediction, (tuple, list)) or len(prediction) != 2:
            raise ValueError("AFMALoss expects the AFMA train-mode output (logits, afma); call the network in train mode.")
        logits, afma = prediction
        k = logits.shape[1]
        labels = _as_index_target(target)
        if labels.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}.")
        if self.weight is not None and self.weight.numel() != k:
            raise ValueError(f"weight has {self.weight.numel()} entries but the logits have {k} classes.")
        nll = F.nll_loss(F.log_softmax(logits.float(), dim=1), labels, weight=self.weight)
        onehot = F.one_hot(labels, k).movedim(-1, 1).to(afma.dtype)
        gold = afma_gold_attention(onehot, self.pool_depth, self.patch_size)
        if gold.shape != afma.shape:
            raise ValueError(
                f"predicted AFMA {tuple(afma.shape)} and gold AFMA {tuple(gold.shape)} differ: build the loss with the "
                "network's att_depth, patch_size and decoder."
            )
        mse = F.mse_loss(afma, gold)
        return self.nll_weight * nll + self.mse_weight * mse


__all__ += ["AFMALoss", "afma_gold_attention"]


# =============================================================================================
# SA2-Net (Fiaz et al., BMVC 2023): DeepSupervisionDiceBCELoss
# =============================================================================================
from typing import Sequence as _Sequence  # noqa: E402

import torch.nn.functional as _F_sa2  # noqa: E402


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
    bce = _F_sa2.binary_cross_entropy_with_logits(logits, truth, reduction="none")
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
        output_weights: _Sequence[float] | None = None,
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
        index = _as_index_target(target)
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
            truth = _F_sa2.one_hot(index, k).movedim(-1, 1).to(logits.dtype)
            prob = torch.softmax(logits, dim=1)
            class_term = _F_sa2.cross_entropy(logits, index)
        dice = _sa2_weighted_dice(prob.reshape(b, k, -1), truth.reshape(b, k, -1), self.smooth)
        return self.dice_weight * dice + self.bce_weight * class_term

    def forward(self, prediction: torch.Tensor | _Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
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


__all__ += ["DeepSupervisionDiceBCELoss"]


# =============================================================================================
# MSGA (Sinha & Dolz, IEEE JBHI 2020): MSGALoss
# =============================================================================================
import torch.nn.functional as _F_msga  # noqa: E402


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
        return _F_msga.cross_entropy(logits, index)

    def forward(self, prediction: torch.Tensor | tuple[torch.Tensor, ...], target: torch.Tensor) -> torch.Tensor:
        index = _as_index_target(target)
        if isinstance(prediction, torch.Tensor):
            return self.ce_weight * self._ce(prediction, index)
        outs = list(prediction)
        if len(outs) != self.num_outputs:
            raise ValueError(f"MSGALoss expects the 32-element train-mode output of MSGA, got {len(outs)} elements.")
        ce = sum(self._ce(p, index) for p in outs[24:32])
        sem = sum(_F_msga.mse_loss(outs[2 * i], outs[2 * i + 1]) for i in range(4))
        rec = sum(_F_msga.mse_loss(outs[8 + i], outs[16 + i]) for i in range(8))
        return self.ce_weight * ce + self.semantic_weight * sem + self.reconstruction_weight * rec


__all__ += ["MSGALoss"]


# ============================================================================================
# MSA2Net (Kolahi et al., BMVC 2024): Boundary Difference over Union loss
# ============================================================================================
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
    def _boundary_count(onehot: torch.Tensor) -> torch.Tensor:
        """Number of foreground pixels whose cross neighbourhood is not fully foreground."""
        nd = onehot.ndim - 1
        k = torch.zeros((3,) * nd, dtype=onehot.dtype, device=onehot.device)
        centre = (1,) * nd
        k[centre] = 1
        for axis in range(nd):
            for off in (0, 2):
                idx = list(centre)
                idx[axis] = off
                k[tuple(idx)] = 1
        conv = torch.nn.functional.conv2d if nd == 2 else torch.nn.functional.conv3d
        y = conv(onehot.unsqueeze(1), k[None, None], padding=1)[:, 0] * onehot
        full = float(2 * nd + 1)
        return torch.count_nonzero((y != 0) & (y != full))

    def _class_loss(self, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s = self.smooth
        c = self._boundary_count(target)
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
        index = _as_index_target(target)
        if tuple(index.shape) != (prediction.shape[0],) + tuple(prediction.shape[2:]):
            raise ValueError(
                f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in batch or spatial size."
            )
        probs = torch.softmax(prediction.float(), dim=1)
        loss = prediction.new_zeros((), dtype=torch.float32)
        for i in range(k):
            loss = loss + self._class_loss(probs[:, i], (index == i).float())
        return loss / k


__all__ += ["BoundaryDoULoss"]
