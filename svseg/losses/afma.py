"""AFMA (Sang et al., TPAMI 2023): 5 x class-weighted NLL + MSE to the gold AFMA.

Reproduces the authors' ``MyLoss_correction`` (``utils/losses.py`` of
https://github.com/ShengtianSang/AFMA); see :class:`AFMALoss` for the differences.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .targets import as_index_target

__all__ = ["AFMALoss", "afma_gold_attention"]

_AFMA_DECODERS = ("unet", "unetplusplus", "fpn", "deeplabv3", "linknet", "manet", "pan", "pspnet")
# log2 of the encoder output stride of the dilated hosts (svseg.networks.afma.afma_pool_depth)
_AFMA_MAX_POOL_DEPTH = {"deeplabv3": 3, "pspnet": 3, "pan": 4}


def _afma_patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, *S) -> non-overlapping patches (B, C, N, p**s), ordered as nn.Unfold, remainder dropped
    (the same layout as ``svseg.networks.blocks.extract_patches``; kept here so the loss imports no network)."""
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
        if not isinstance(prediction, (tuple, list)) or len(prediction) != 2:
            raise ValueError("AFMALoss expects the AFMA train-mode output (logits, afma); call the network in train mode.")
        logits, afma = prediction
        k = logits.shape[1]
        labels = as_index_target(target)
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
