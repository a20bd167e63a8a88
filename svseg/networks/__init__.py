"""svseg networks: five published attention networks, MONAI style.

Each network lives in its own module; this package re-exports the public classes.
"""
from __future__ import annotations

__all__: list[str] = []

# Each network module appends its public class below (one import line per module).
from .sa2net import SA2Net  # noqa: E402

__all__ += ["SA2Net"]
from .msa2net import MSA2Net  # noqa: E402

__all__ += ["MSA2Net"]
from .afma import AFMA  # noqa: E402

__all__ += ["AFMA"]
from .svanet import SvANet  # noqa: E402

__all__ += ["SvANet"]
from .msga import MSGA  # noqa: E402

__all__ += ["MSGA"]
