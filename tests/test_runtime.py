"""Tests of :mod:`svseg.runtime` (no process group, no GPU needed)."""

from __future__ import annotations

import io

import torch

from svseg.runtime import is_rank0, progress_enabled, resolve_device


class Pipe:
    def isatty(self):
        return False


class Terminal:
    def isatty(self):
        return True


class Closed:
    def isatty(self):
        raise ValueError("I/O operation on closed file")


def test_is_rank0_without_process_group():
    assert is_rank0()


def test_progress_enabled_follows_terminal_and_env(monkeypatch):
    monkeypatch.delenv("SVSEG_PROGRESS", raising=False)
    assert progress_enabled(Pipe()) is False
    assert progress_enabled(Terminal()) is True
    assert progress_enabled(Closed()) is False and progress_enabled(object()) is False
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_enabled() is False  # default stream: sys.stderr
    monkeypatch.setenv("SVSEG_PROGRESS", "1")
    assert progress_enabled(Pipe()) is True
    monkeypatch.setenv("SVSEG_PROGRESS", "off")
    assert progress_enabled(Terminal()) is False


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device(None) == resolve_device("AUTO")
    dev = torch.device("cpu")
    assert resolve_device(dev) is dev
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # strings pass through
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device(None) == torch.device("cuda", 1)  # torchrun: this process's GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
