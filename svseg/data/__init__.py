"""svseg data: dataset rules, datalists, MONAI readers and transforms, converters, demo data."""

from __future__ import annotations

from svseg.data.demo import prepare_demo

__all__ = ["prepare_demo"]
