"""Process-level facts every part of svseg may ask about: which rank we are, where to compute,
whether to draw progress bars.

It imports nothing from svseg, so any module (training, inference, the CLI, bundle code) can
depend on it without creating an import cycle.

- :func:`is_rank0`: ``True`` unless ``torch.distributed`` is initialised and this process is not
  rank 0 (used to write files once per job).
- :func:`progress_enabled`: whether a progress bar should be drawn on a stream
  (``SVSEG_PROGRESS`` overrides the terminal check).
- :func:`resolve_device`: ``None`` / ``"auto"`` -> ``cuda:<LOCAL_RANK>`` or CPU.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["is_rank0", "progress_enabled", "resolve_device"]


def is_rank0() -> bool:
    """True unless ``torch.distributed`` is initialised and this process is not rank 0."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def progress_enabled(stream: Any = None) -> bool:
    """Whether progress bars should be drawn.

    ``SVSEG_PROGRESS=1`` / ``0`` forces them on / off; otherwise they are drawn only when the
    stream (default ``sys.stderr``) is an interactive terminal, so log files and CI output stay
    free of carriage-return noise.
    """
    env = os.environ.get("SVSEG_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> ``cuda:<LOCAL_RANK>`` when CUDA is available, else CPU; strings pass through."""
    if isinstance(device, torch.device):
        return device
    if device is None or str(device).lower() == "auto":
        if torch.cuda.is_available():
            return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
        return torch.device("cpu")
    return torch.device(str(device))
