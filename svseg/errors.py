"""The error type for bad user input, at the bottom of the package so every stage (and the CLI) can use it.

It imports nothing heavy: ``svseg --help`` and the CLI's error formatting stay fast.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input data: the message is one line, ``<file name>: <problem>``.

    Attributes:
        path: the offending file.
        problem: what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = str(problem)
        super().__init__(f"{Path(self.path).name}: {self.problem}")
