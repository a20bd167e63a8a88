"""Tests for the MSGA loss, :class:`svseg.losses.MSGALoss` (svseg.losses.msga).

All inputs are small synthetic tensors with hand-computable values.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from svseg.losses import MSGALoss
from svseg.networks import MSGA
from tests.losses.helpers import assert_decreases_on_fixed_batch


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
    torch.manual_seed(0)
    net = MSGA(spatial_dims=2, in_channels=1, out_channels=3, backbone="resnet50", features=8).train()
    x = torch.randn(2, 1, 32, 32)
    y = (x > 0.5).long() + (x > 1.2).long()
    loss_fn = MSGALoss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.9, 0.99))  # the authors' optimiser
    assert_decreases_on_fixed_batch(loss_fn, opt, lambda: net(x), y, steps=3)
