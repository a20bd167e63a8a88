"""Tests of :mod:`svseg.training.distributed` (one process; rank > 0 is simulated)."""

from __future__ import annotations

import socket

import monai.handlers
import pytest
import torch
import torch.distributed as dist
from monai.handlers import CheckpointSaver, StatsHandler, ValidationHandler

import svseg.training
from svseg.runtime import is_rank0
from svseg.training import (
    RANK_ZERO_ONLY,
    AtomicCheckpointSaver,
    CheckpointResumer,
    EpochProgressBar,
    NaNGuard,
    OOMHint,
    PeriodicValidation,
    ProgressPlot,
    TensorBoardStats,
    destroy_distributed,
    init_distributed,
    rank_zero_handlers,
)


def handler_list(tmp_path):
    net = torch.nn.Linear(2, 1)
    every_rank = [CheckpointResumer(tmp_path, net), NaNGuard(tmp_path), OOMHint(), PeriodicValidation(None),
                  ValidationHandler(interval=1)]
    rank_zero = [AtomicCheckpointSaver(tmp_path, net), ProgressPlot(tmp_path), EpochProgressBar(enabled=False),
                 TensorBoardStats(log_dir=str(tmp_path / "tb")), StatsHandler(iteration_log=False),
                 CheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net})]
    return every_rank, rank_zero


def test_rank_zero_handlers_without_ddp_keeps_all(tmp_path):
    every_rank, rank_zero = handler_list(tmp_path)
    hs = [object()] + every_rank + rank_zero
    assert rank_zero_handlers(hs) == hs  # a single process keeps all handlers
    assert rank_zero_handlers(None) == []


def test_rank_zero_handlers_on_rank_1_drops_the_writers(tmp_path, monkeypatch):
    every_rank, rank_zero = handler_list(tmp_path)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)  # as on DDP rank 1
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    assert rank_zero_handlers(rank_zero[:2] + every_rank + rank_zero[2:]) == every_rank


def test_rank_zero_only_names_exist():
    """Every name in the list is a handler class of svseg.training or MONAI (no stale names)."""
    for name in RANK_ZERO_ONLY:
        cls = getattr(svseg.training, name, None) or getattr(monai.handlers, name, None)
        assert isinstance(cls, type), f"{name} is neither an svseg.training nor a monai.handlers class"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the automatic backend is gloo on CPU-only machines")
def test_init_and_destroy_distributed_single_process(monkeypatch, tmp_path):
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
                       "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    assert not dist.is_initialized()
    try:
        init_distributed()
        assert dist.is_initialized() and dist.get_backend() == "gloo" and dist.get_world_size() == 1
        init_distributed()  # already initialised: no-op
        assert is_rank0()
        hs = handler_list(tmp_path)[1]
        assert rank_zero_handlers(hs) == hs  # rank 0 keeps all handlers
    finally:
        destroy_distributed()
    assert not dist.is_initialized()
    destroy_distributed()  # not initialised: no-op
