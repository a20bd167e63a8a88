"""torchrun helpers for the bundles' ``multi_gpu_train.json``.

- :func:`init_distributed` / :func:`destroy_distributed`: MONAI's model-zoo multi-GPU configs
  call ``torch.distributed.init_process_group(backend="nccl")`` inline; these choose ``nccl`` or
  ``gloo`` from the hardware (so the same config runs on a CPU test machine), pin each process to
  its ``LOCAL_RANK`` GPU, and are no-ops when already (or not) initialised.
- :func:`rank_zero_handlers`: MONAI has no rank-0-only switch for handlers (its model-zoo configs
  slice the handler list by position on ranks > 0, which breaks when the list changes); this
  filters by class name, dropping on ranks > 0 the handlers that write files or logs
  (:data:`RANK_ZERO_ONLY`) and keeping those every rank needs (resume, NaN guard, validation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["RANK_ZERO_ONLY", "init_distributed", "destroy_distributed", "rank_zero_handlers"]

#: Class names of the handlers that only rank 0 attaches: MONAI's savers and loggers and the
#: svseg handlers that write files (``svseg.training`` names, MONAI ``monai.handlers`` names).
RANK_ZERO_ONLY = ("CheckpointSaver", "StatsHandler", "TensorBoardStatsHandler", "TensorBoardStats", "MLFlowHandler",
                  "ProgressPlot", "AtomicCheckpointSaver", "EpochProgressBar")


def init_distributed(backend: str | None = None) -> None:
    """Join the torchrun process group: ``nccl`` on GPUs, ``gloo`` on CPU (chosen automatically)."""
    if dist.is_initialized():
        return
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend=backend)


def destroy_distributed() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_zero_handlers(handlers: Sequence[Any] | None) -> list:
    """All handlers on rank 0; on other ranks drop those that save or log (checkpoints, stats, plots)."""
    handlers = list(handlers or [])
    if not dist.is_initialized() or dist.get_rank() == 0:
        return handlers
    return [h for h in handlers if type(h).__name__ not in RANK_ZERO_ONLY]
