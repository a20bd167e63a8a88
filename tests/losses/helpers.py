"""Shared checks for the loss tests."""
from __future__ import annotations

import math
from typing import Any, Callable

import torch


def assert_decreases_on_fixed_batch(
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    make_prediction: Callable[[], Any],
    target: torch.Tensor,
    steps: int,
    factor: float = 1.0,
) -> list[float]:
    """Run ``steps`` optimiser steps on one fixed batch and check the loss went down.

    Each step zeroes the gradients, computes ``loss_fn(make_prediction(), target)``, back-propagates
    it and steps ``optimizer``. Every recorded loss must be finite and the last one must be below
    ``factor`` times the first (``factor=1.0``: simply lower). Returns the recorded losses.
    """
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(make_prediction(), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < factor * losses[0], losses
    return losses
