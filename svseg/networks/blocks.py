"""Small pieces shared by the svseg networks (2D/3D resizing, state-dict checks)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = ["interp_mode", "resize_to", "state_dict_mismatch"]


def interp_mode(spatial_dims: int) -> str:
    """``"bilinear"`` in 2D, ``"trilinear"`` in 3D."""
    return "bilinear" if spatial_dims == 2 else "trilinear"


def resize_to(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """Interpolate ``x`` (B, C, *spatial) to ``size`` (``align_corners=False``); a no-op at that size already."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


def state_dict_mismatch(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Sorted keys ``own`` lacks in ``state`` (missing), ``state`` has beyond ``own`` (unexpected), and
    keys present in both with different shapes."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    return missing, unexpected, bad_shape
