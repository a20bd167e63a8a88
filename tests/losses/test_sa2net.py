"""Tests for the SA2-Net loss, :class:`svseg.losses.DeepSupervisionDiceBCELoss` (svseg.losses.sa2net).

All inputs are small synthetic tensors with hand-computable values.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from svseg.losses import DeepSupervisionDiceBCELoss
from svseg.networks import SA2Net
from tests.losses.helpers import assert_decreases_on_fixed_batch


def _authors_weighted_dice_bce(prob, truth):
    """The authors' WeightedDiceBCE(0.5, 0.5) on probabilities, re-typed from its definition."""
    b = prob.shape[0]
    p = 0.5 * prob.reshape(b, -1)
    t = 0.5 * truth.reshape(b, -1)
    dice = (1 - (2 * (p * t).sum(-1) + 1e-5) / ((p * p).sum(-1) + (t * t).sum(-1) + 1e-5)).mean()
    bce = F.binary_cross_entropy(prob.reshape(-1), truth.reshape(-1), reduction="none")
    pos = (truth.reshape(-1) > 0.5).float()
    neg = 1 - pos
    bce = (0.5 * pos * bce / (pos.sum() + 1e-12) + 0.5 * neg * bce / (neg.sum() + 1e-12)).sum()
    return 0.5 * dice + 0.5 * bce


def test_sa2_hand_computed_zero_logits():
    # logits 0 -> p = 0.5 everywhere; 2 of 4 pixels foreground.
    # BCE = log 2 for every pixel -> balanced BCE = log 2.
    # Dice: p' = 0.25, t' = 0.5 on fg: inter = 2 * 0.125 = 0.25, union = 4 * 0.0625 + 2 * 0.25 = 0.75
    target = torch.tensor([[[[1, 1], [0, 0]]]])
    logits = torch.zeros(1, 1, 2, 2)
    dice = 1 - (0.5 + 1e-5) / (0.75 + 1e-5)
    single = 0.5 * dice + 0.5 * math.log(2)
    loss = DeepSupervisionDiceBCELoss()
    assert loss(logits, target).item() == pytest.approx(single, rel=1e-6)  # eval-mode tensor
    assert loss((logits,) * 4, target).item() == pytest.approx(4 * single, rel=1e-6)
    weighted = DeepSupervisionDiceBCELoss(output_weights=[1.0, 0.5, 0.25, 0.0])
    assert weighted([logits] * 4, target).item() == pytest.approx(1.75 * single, rel=1e-6)


def test_sa2_class_balanced_bce():
    # 1 fg pixel with logit a, 3 bg pixels with logit b: BCE = 0.5*softplus(-a) + 0.5*softplus(b)
    a, b = 2.0, -1.0
    logits = torch.tensor([[[[a, b], [b, b]]]])
    target = torch.tensor([[[[1, 0], [0, 0]]]])
    bce = 0.5 * math.log1p(math.exp(-a)) + 0.5 * math.log1p(math.exp(b))
    pa, pb = 1 / (1 + math.exp(-a)), 1 / (1 + math.exp(-b))
    inter = 0.25 * pa
    union = 0.25 * (pa**2 + 3 * pb**2) + 0.25
    dice = 1 - (2 * inter + 1e-5) / (union + 1e-5)
    got = DeepSupervisionDiceBCELoss(dice_weight=0.5, bce_weight=0.5)(logits, target).item()
    assert got == pytest.approx(0.5 * dice + 0.5 * bce, rel=1e-6)


def test_sa2_matches_authors_formula_and_perfect_prediction():
    torch.manual_seed(0)
    logits = [torch.randn(2, 1, 8, 8) for _ in range(4)]
    target = (torch.rand(2, 1, 8, 8) > 0.6).long()
    ours = DeepSupervisionDiceBCELoss()(tuple(logits), target)
    ref = sum(_authors_weighted_dice_bce(torch.sigmoid(x), target.float()) for x in logits)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    perfect = (target.float() * 2 - 1) * 30.0
    assert DeepSupervisionDiceBCELoss()([perfect] * 4, target).item() < 1e-5


def test_sa2_multiclass_softmax_dice_ce():
    # zero logits, K = 2: CE = log 2; softmax p = 0.5 for both classes -> each class's Dice is
    # the binary case above (2 of 4 pixels in each class)
    target = torch.tensor([[[[1, 1], [0, 0]]]])
    logits = torch.zeros(1, 2, 2, 2)
    dice = 1 - (0.5 + 1e-5) / (0.75 + 1e-5)
    expected = 0.5 * dice + 0.5 * math.log(2)
    assert DeepSupervisionDiceBCELoss()(logits, target).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="labels"):
        DeepSupervisionDiceBCELoss()(logits, target + 5)


def test_sa2_errors():
    with pytest.raises(ValueError, match="dice_weight"):
        DeepSupervisionDiceBCELoss(dice_weight=-1)
    with pytest.raises(ValueError, match="output_weights"):
        DeepSupervisionDiceBCELoss(output_weights=[])
    with pytest.raises(ValueError, match="output_weights"):
        DeepSupervisionDiceBCELoss(output_weights=[1, 1])([torch.zeros(1, 1, 2, 2)] * 3, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="spatial size"):
        DeepSupervisionDiceBCELoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2))


def test_sa2_loss_decreases_with_network():
    """Three Adam steps of a small SA2-Net on one fixed synthetic batch lower the loss."""
    torch.manual_seed(0)
    net = SA2Net(spatial_dims=2, in_channels=3, out_channels=1, features=8).train()
    x = torch.randn(2, 3, 32, 32)
    y = (x[:, :1] > 0.3).long()
    loss_fn = DeepSupervisionDiceBCELoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    assert_decreases_on_fixed_batch(loss_fn, opt, lambda: net(x), y, steps=4)
