"""BoundaryDoULoss (MSA2Net's training loss): hand-computed values and an optimisation check.

All inputs are synthetic (tiny hand-written label maps and random logits).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from svseg.losses import BoundaryDoULoss
from tests.losses.helpers import assert_decreases_on_fixed_batch


def _reference(logits: np.ndarray, labels: np.ndarray, smooth: float = 1e-5, alpha_max: float = 0.8) -> float:
    """Boundary DoU with plain Python loops (B, K, H, W logits; B, H, W labels)."""
    b, k, h, w = logits.shape
    total = 0.0
    for c in range(k):
        boundary = fg = 0
        inter = y_sum = z_sum = 0.0
        for n in range(b):
            for i in range(h):
                for j in range(w):
                    ex = [math.exp(logits[n, q, i, j]) for q in range(k)]
                    p = ex[c] / sum(ex)
                    g = 1.0 if labels[n, i, j] == c else 0.0
                    inter += p * g
                    y_sum += g * g
                    z_sum += p * p
                    if g:
                        fg += 1
                        cross = [(i, j), (i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)]
                        inside = sum(1 for (a, bb) in cross if 0 <= a < h and 0 <= bb < w and labels[n, a, bb] == c)
                        if inside != 5:
                            boundary += 1
        alpha = 1 - (boundary + smooth) / (fg + smooth)
        alpha = min(2 * alpha - 1, alpha_max)
        total += (z_sum + y_sum - 2 * inter + smooth) / (z_sum + y_sum - (1 + alpha) * inter + smooth)
    return total / k


def _label_map() -> np.ndarray:
    """Two 6x7 synthetic label maps: a 4x4 square of class 1 (4 interior pixels) and a class-2 bar."""
    lab = np.zeros((2, 6, 7), dtype=np.int64)
    lab[0, 1:5, 1:5] = 1
    lab[0, 5, :] = 2
    lab[1, 0:3, 2:7] = 1
    return lab


def test_matches_hand_computation():
    rng = np.random.default_rng(0)
    labels = _label_map()
    logits = rng.normal(size=(2, 3, 6, 7)).astype(np.float64)
    expected = _reference(logits, labels)
    got = BoundaryDoULoss(num_classes=3)(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels[:, None]))
    assert got.ndim == 0
    assert float(got) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_alpha_branches_by_hand():
    """Closed form on a prediction equal to the one-hot target (p = g): z = y = I."""
    # class 1 is a 4x4 square in a 6x7 map: S = 16, C = 12 (2x2 interior) -> alpha = -0.5;
    # class 0 (background) is the 26 remaining pixels, every one on a boundary -> alpha = -1
    labels = _label_map()[:1, :, :]
    labels[0, 5, :] = 0  # only classes 0 and 1
    onehot = np.stack([(labels == c) for c in range(2)], axis=1).astype(np.float64)
    logits = torch.tensor(np.log(np.clip(onehot, 1e-30, None)), dtype=torch.float32)  # softmax = one-hot
    loss = float(BoundaryDoULoss()(logits, torch.tensor(labels[:, None])))
    eps = 1e-5

    def term(s_fg: int, c_bd: int) -> float:
        alpha = min(2 * (1 - (c_bd + eps) / (s_fg + eps)) - 1, 0.8)
        i = float(s_fg)
        return (i + i - 2 * i + eps) / (i + i - (1 + alpha) * i + eps)

    # count the background boundary pixels by hand (zero padding outside the image)
    bg = labels[0] == 0
    c_bg = sum(
        1
        for i in range(6)
        for j in range(7)
        if bg[i, j]
        and not all(0 <= a < 6 and 0 <= b < 7 and bg[a, b] for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)))
    )
    assert c_bg == 26  # the background is a 1-pixel ring plus a 2-wide column, all boundary
    expected = (term(26, c_bg) + term(16, 12)) / 2
    assert loss == pytest.approx(expected, abs=1e-6)
    assert loss < 1e-4  # a perfect prediction has (almost) zero loss


def test_absent_class_contributes_one():
    """A class with no foreground pixel gives (sum p^2 + eps) / (sum p^2 + eps) = 1 whatever p is."""
    loss = BoundaryDoULoss()
    score = torch.rand(2, 5, 5)
    assert float(loss.class_loss(score, torch.zeros(2, 5, 5))) == pytest.approx(1.0, abs=1e-7)
    # so with only background present, the mean over 3 classes is (bg term + 2) / 3
    labels = torch.zeros(1, 1, 5, 5, dtype=torch.long)
    logits = torch.randn(1, 3, 5, 5)
    bg = float(loss.class_loss(torch.softmax(logits, 1)[:, 0], torch.ones(1, 5, 5)))
    assert float(loss(logits, labels)) == pytest.approx((bg + 2.0) / 3.0, rel=1e-6)
    assert float(loss(logits, labels)) == pytest.approx(_reference(logits.double().numpy(), labels[:, 0].numpy()), rel=1e-5)


def test_float_and_integer_targets_agree():
    labels = torch.tensor(_label_map())
    logits = torch.randn(2, 3, 6, 7)
    loss = BoundaryDoULoss()
    a = loss(logits, labels[:, None].float())
    b = loss(logits, labels[:, None])
    c = loss(logits, labels)
    assert torch.equal(a, b) and torch.equal(b, c)


def test_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    labels = torch.tensor(_label_map())[:, None]
    x = torch.randn(2, 4, 6, 7)
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 3, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = BoundaryDoULoss(num_classes=3)
    assert_decreases_on_fixed_batch(loss_fn, opt, lambda: net(x), labels, steps=30, factor=0.5)


def test_3d_extension_kernel():
    """3D: a 3x3x3 cube has 1 interior voxel (the 6-neighbour cross is complete only at its centre)."""
    lab = torch.zeros(1, 5, 5, 5)
    lab[0, 1:4, 1:4, 1:4] = 1
    assert int(BoundaryDoULoss.boundary_count(lab)) == 26
    out = BoundaryDoULoss()(torch.randn(1, 2, 5, 5, 5), lab[:, None])
    assert out.ndim == 0 and torch.isfinite(out)


@pytest.mark.parametrize(
    "kwargs, pred_shape, target_shape, match",
    [
        (dict(num_classes=4), (1, 3, 4, 4), (1, 1, 4, 4), "num_classes"),
        ({}, (1, 3, 4, 4), (1, 1, 4, 5), "differ"),
        ({}, (1, 3, 4), (1, 1, 4), r"\(B, K, H, W\)"),
    ],
)
def test_invalid_inputs(kwargs, pred_shape, target_shape, match):
    with pytest.raises(ValueError, match=match):
        BoundaryDoULoss(**kwargs)(torch.randn(pred_shape), torch.zeros(target_shape))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        BoundaryDoULoss(num_classes=1)
    with pytest.raises(ValueError, match="smooth"):
        BoundaryDoULoss(smooth=0)
