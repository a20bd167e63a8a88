"""Tests for :func:`svseg.losses.as_index_target`, the label-map conversion the losses share."""
from __future__ import annotations

import torch

from svseg.losses import as_index_target


def test_channel_axis_dropped_and_floats_rounded():
    labels = torch.tensor([[[[0.0, 1.0], [2.0, 0.9999]]]])  # (1, 1, 2, 2), float as MONAI gives
    out = as_index_target(labels)
    assert out.dtype == torch.int64
    assert torch.equal(out, torch.tensor([[[0, 1], [2, 1]]]))


def test_index_maps_pass_through():
    labels = torch.randint(0, 4, (2, 3, 5), dtype=torch.uint8)  # (B, H, W): no channel axis to drop
    out = as_index_target(labels)
    assert out.dtype == torch.int64 and torch.equal(out, labels.long())
    volume = torch.randint(0, 4, (2, 1, 3, 4, 5))
    assert torch.equal(as_index_target(volume), volume[:, 0])
