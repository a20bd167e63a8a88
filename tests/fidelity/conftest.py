"""Fixtures of the fidelity tests."""
from __future__ import annotations

import sys

import pytest


@pytest.fixture
def isolated_imports(monkeypatch):
    """Restore ``sys.modules`` afterwards: the authors' top-level names (``utils``, ``lib``, ``networks``) must
    not leak into other tests."""
    before = set(sys.modules)
    yield monkeypatch
    for name in set(sys.modules) - before:
        del sys.modules[name]
