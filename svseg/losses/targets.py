"""Target handling shared by the svseg losses."""
from __future__ import annotations

import torch

__all__ = ["as_index_target"]


def as_index_target(target: torch.Tensor) -> torch.Tensor:
    """(B, 1, *spatial) or (B, *spatial) label map -> (B, *spatial) int64 class indices.

    Float labels (as MONAI transforms produce) are rounded before the cast.
    """
    if target.ndim >= 3 and target.shape[1] == 1:
        target = target[:, 0]
    return target.round().long() if target.is_floating_point() else target.long()
