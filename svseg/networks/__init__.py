"""svseg networks: five published attention networks, MONAI style.

Each network lives in its own module; this package re-exports the public classes.
"""
from __future__ import annotations

__all__: list[str] = []

# Each network module appends its public class below (one import line per module).
