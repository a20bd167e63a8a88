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

__all__ = ["authors_dir", "stub", "load_file"]


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


def load_file(name: str, path: Path) -> ModuleType:
    """Import one source file of the authors' as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
