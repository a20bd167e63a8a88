"""svseg networks: five published attention networks, MONAI style.

Each network lives in its own module (``afma``, ``msa2net``, ``msga``, ``sa2net``, ``svanet``);
``blocks`` holds the pieces several of them share. This package re-exports the public classes.
"""
from __future__ import annotations

from .afma import AFMA
from .authors import load_authors_weights
from .fast import fast_mode, is_fast_mode
from .msa2net import MSA2Net
from .msga import MSGA
from .sa2net import SA2Net
from .svanet import SvANet

__all__ = ["SA2Net", "MSA2Net", "AFMA", "SvANet", "MSGA", "load_authors_weights", "fast_mode", "is_fast_mode"]
