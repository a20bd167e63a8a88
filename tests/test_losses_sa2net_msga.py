"""Tests for the SA2-Net and MSGA losses in :mod:`svseg.losses`.

All inputs are small synthetic tensors with hand-computable values.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from svseg.losses import DeepSupervisionDiceBCELoss, MSGALoss


# ------------------------------------------------------------------------------------- SA2-Net
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
    from svseg.networks import SA2Net

    torch.manual_seed(0)
    net = SA2Net(spatial_dims=2, in_channels=3, out_channels=1, features=8).train()
    x = torch.randn(2, 3, 32, 32)
    y = (x[:, :1] > 0.3).long()
    loss_fn = DeepSupervisionDiceBCELoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


# ---------------------------------------------------------------------------------------- MSGA
def _msga_tuple(b=1, k=5, h=4, w=4, vec_delta=1.0, rec_delta=2.0):
    vecs = []
    for _ in range(4):
        v = torch.randn(b, 6)
        vecs += [v, v + vec_delta]
    inputs = [torch.randn(b, 8, 2, 2) for _ in range(8)]
    recs = [t + rec_delta for t in inputs]
    preds = [torch.zeros(b, k, h, w) for _ in range(8)]
    return tuple(vecs + inputs + recs + preds)


def test_msga_hand_computed():
    # zero logits, 5 classes: CE = log 5 per head (8 heads); semantic MSE = 1 (4 pairs);
    # reconstruction MSE = 4 (8 pairs)
    torch.manual_seed(0)
    pred = _msga_tuple()
    target = torch.randint(0, 5, (1, 1, 4, 4))
    expected = 8 * math.log(5) + 0.25 * 4 * 1.0 + 0.1 * 8 * 4.0
    assert MSGALoss()(pred, target).item() == pytest.approx(expected, rel=1e-6)
    only_ce = MSGALoss(semantic_weight=0, reconstruction_weight=0)(pred, target)
    assert only_ce.item() == pytest.approx(8 * math.log(5), rel=1e-6)
    # eval-mode single tensor: cross-entropy only
    assert MSGALoss()(pred[-1], target).item() == pytest.approx(math.log(5), rel=1e-6)


def test_msga_ce_uses_every_head_and_float_targets():
    torch.manual_seed(0)
    pred = list(_msga_tuple(vec_delta=0.0, rec_delta=0.0))
    target = torch.zeros(1, 1, 4, 4)  # float labels as MONAI transforms produce
    pred[24] = torch.zeros(1, 5, 4, 4)
    pred[24][:, 0] = 10.0  # one confident, correct head
    ce_one = F.cross_entropy(pred[24], target[:, 0].long()).item()
    expected = ce_one + 7 * math.log(5)
    assert MSGALoss()(tuple(pred), target).item() == pytest.approx(expected, rel=1e-6)


def test_msga_errors():
    with pytest.raises(ValueError, match="32"):
        MSGALoss()(tuple(torch.zeros(1, 5, 4, 4) for _ in range(8)), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="semantic_weight"):
        MSGALoss(semantic_weight=-0.1)
    with pytest.raises(ValueError, match="differ"):
        MSGALoss()(torch.zeros(1, 5, 4, 4), torch.zeros(1, 1, 8, 8))


def test_msga_loss_decreases_with_network():
    """Three Adam steps of a small MSGA (ResNet-50 backbone, 8-wide attention) on one fixed
    synthetic batch lower the authors' composite loss."""
    from svseg.networks import MSGA

    torch.manual_seed(0)
    net = MSGA(spatial_dims=2, in_channels=1, out_channels=3, backbone="resnet50", features=8).train()
    x = torch.randn(2, 1, 32, 32)
    y = (x > 0.5).long() + (x > 1.2).long()
    loss_fn = MSGALoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99))  # the authors' optimiser
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
