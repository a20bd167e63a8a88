"""Fixtures of the data tests: the tiny demo set built once from the real MNI152 template (nilearn)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def demo_tiny(tmp_path_factory):
    """Folder of the tiny demo set (real MNI152 data, 4 mm), built once per test session."""
    from svseg.data.demo import prepare_demo

    return prepare_demo(tmp_path_factory.mktemp("svseg_demo") / "demo_tiny", tiny=True)
