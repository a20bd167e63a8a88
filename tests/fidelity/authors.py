"""Shared helpers of the fidelity tests: find an authors' checkout, stub their training-only imports.

``SVSEG_AUTHORS_DIR`` holds one checkout (or export) per repository: ``SvANet``, ``MSA-2Net``, ``AFMA``,
``SA2-Net``, ``Multi-Scale-Attention``, ``UCTransNet``, ``Awesome-U-Net``. A test that needs one skips,
saying why, when the variable is unset or the folder is missing. Only imports and paths are patched, never
the authors' math, and none of their code is kept in this repository.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

__all__ = ["authors_dir", "stub", "load_file", "use_checkout", "randomize_constant_state", "used_parameters",
           "output_atol"]


def authors_dir(repo: str) -> Path:
    """``$SVSEG_AUTHORS_DIR/<repo>``, or skip the test with the reason."""
    root = os.environ.get("SVSEG_AUTHORS_DIR")
    if not root:
        pytest.skip("SVSEG_AUTHORS_DIR is not set (a folder with one checkout of each authors' repository)")
    path = Path(root) / repo
    if not path.is_dir():
        pytest.skip(f"{path} does not exist: put the {repo} repository there")
    return path


def stub(monkeypatch, name: str, **attrs) -> ModuleType:
    """An empty module ``name`` (with ``attrs``) in ``sys.modules`` for the test's duration."""
    module = ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def use_checkout(mp, root: Path, package: str) -> None:
    """Put an authors' checkout first on ``sys.path``, forget another repository's top-level ``package`` of the
    same name (``models``, ``nets``), and make any weight download fail: the tests build untrained models."""
    mp.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        mp.delitem(sys.modules, name)

    def no_download(*args, **kwargs):
        raise AssertionError("the fidelity tests must not download weights")

    mp.setattr(torch.hub, "load_state_dict_from_url", no_download)


def load_file(name: str, path: Path) -> ModuleType:
    """Import one source file of the authors' as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def randomize_constant_state(model: torch.nn.Module) -> None:
    """Random running statistics, and noise on every floating tensor initialised to one constant (norm weights
    and biases, PReLU slopes, zero-initialised attention ``gamma`` and biases), so that a transfer that swaps or
    forgets one of them shows in the outputs."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            elif name.endswith("running_mean") or bool((t == t.flatten()[0]).all()):
                t.add_(0.1 * torch.randn_like(t))


def used_parameters(model: torch.nn.Module, outputs) -> dict[str, int]:
    """Names and sizes of the parameters that receive a gradient from a backward of all ``outputs``: the
    parameters a forward pass uses (the authors build some modules they never call)."""
    model.zero_grad(set_to_none=True)
    sum(o.float().sum() for o in outputs).backward()
    return {n: p.numel() for n, p in model.named_parameters() if p.grad is not None}


def output_atol(reference: torch.Tensor) -> float:
    """1e-5 of the output's scale: a relative tolerance alone cannot hold where a value crosses zero, and
    summation-order differences grow with the scale of the output."""
    return 1e-5 * float(reference.detach().abs().max())
