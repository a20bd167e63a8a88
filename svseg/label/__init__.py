"""MONAI Label integration: an app that serves the svseg bundles (``python -m svseg.label start``).

Needs the optional extra: ``pip install -e ".[label]"`` (MONAI Label 0.8.5 pins numpy<2, pydicom<3,
so use its own environment: ``make venv-label`` creates ``.venv-label``). ``svseg.label.app`` imports
monailabel; this package's launcher (:mod:`svseg.label.server`) does not, so ``--help`` works anywhere.
"""
from __future__ import annotations

from svseg.label.server import build_app_dir, start_command

__all__ = ["build_app_dir", "start_command"]
