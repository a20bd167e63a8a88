"""Tests for the SvANet loss, :class:`svseg.losses.LabelCrossEntropyLoss` (svseg.losses.svanet).

All inputs are small synthetic tensors; the reference values are written out by hand or come
from ``torch.nn.functional.cross_entropy``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from svseg.losses import LabelCrossEntropyLoss
from tests.losses.helpers import assert_decreases_on_fixed_batch


def test_hand_computed_values():
    # zero logits over 4 classes: every pixel costs log 4
    target = torch.tensor([[[[0, 1], [2, 3]]]])
    assert LabelCrossEntropyLoss()(torch.zeros(1, 4, 2, 2), target).item() == pytest.approx(math.log(4), rel=1e-6)
    # two classes, one pixel each way: logit gap d on the right class costs log(1 + e^-d)
    d = 2.0
    logits = torch.tensor([[[[d, 0.0]], [[0.0, d]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[0, 1]]]])
    assert LabelCrossEntropyLoss()(logits, target).item() == pytest.approx(math.log1p(math.exp(-d)), rel=1e-6)


def test_matches_torch_cross_entropy_with_weights():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5, 6)
    target = torch.randint(0, 3, (2, 1, 5, 6))
    weight = [0.2, 1.0, 3.0]
    expected = F.cross_entropy(logits, target[:, 0], weight=torch.tensor(weight))
    got = LabelCrossEntropyLoss(weight=weight)(logits, target)
    torch.testing.assert_close(got, expected)
    # float labels (as MONAI transforms give) and (B, *S) labels give the same value
    torch.testing.assert_close(LabelCrossEntropyLoss(weight=weight)(logits, target.float()), expected)
    torch.testing.assert_close(LabelCrossEntropyLoss(weight=weight)(logits, target[:, 0]), expected)


def test_ignore_index_excludes_pixels():
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 1, 4, 4))
    padded = target.clone()
    padded[..., :, 2:] = 255  # the right half is padding
    kept = F.cross_entropy(logits[..., :2].reshape(1, 3, -1), target[..., :2].reshape(1, -1))
    got = LabelCrossEntropyLoss()(logits, padded)
    torch.testing.assert_close(got, kept)
    torch.testing.assert_close(got, F.cross_entropy(logits, padded[:, 0], ignore_index=255))
    # another ignore value is honoured, and 255 is then an (invalid) class, not padding
    torch.testing.assert_close(LabelCrossEntropyLoss(ignore_index=0)(logits, target),
                               F.cross_entropy(logits, target[:, 0], ignore_index=0))
    with pytest.raises((IndexError, RuntimeError)):
        LabelCrossEntropyLoss(ignore_index=-100)(logits, padded)


def test_tuple_prediction_uses_its_first_element():
    torch.manual_seed(2)
    logits = torch.randn(2, 2, 4, 4)
    target = torch.randint(0, 2, (2, 1, 4, 4))
    single = LabelCrossEntropyLoss()(logits, target)
    torch.testing.assert_close(LabelCrossEntropyLoss()((logits, torch.zeros(1)), target), single)
    torch.testing.assert_close(LabelCrossEntropyLoss()([logits, torch.randn(2, 2, 4, 4)], target), single)


def test_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    target = (x[:, :1] > 0).long()  # synthetic label, learnable from the input
    target[:, :, 0, :] = 255  # one padded row
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = LabelCrossEntropyLoss()
    assert_decreases_on_fixed_batch(loss_fn, opt, lambda: net(x), target, steps=20, factor=0.5)
