"""Shared pytest configuration for svseg.

``pytest_generate_tests`` turns the class attributes of the shared network tester
(``tests/networks/base.py``) into parameterised cases, MONAI style: a subclass only lists
its cases and every base test runs once per case.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_generate_tests(metafunc):
    cls = metafunc.cls
    if cls is None:
        return
    for fixture, attr in (("case", "cases"), ("pin", "param_pins"), ("bad_kwargs", "invalid_kwargs")):
        if fixture in metafunc.fixturenames:
            items = list(getattr(cls, attr, None) or [])
            if not items:
                metafunc.parametrize(fixture, [pytest.param(None, marks=pytest.mark.skip(reason=f"{cls.__name__} defines no {attr}"))])
                continue
            ids = [getattr(it, "name", None) or f"{attr}{i}" for i, it in enumerate(items)]
            # class scope makes pytest group the tests of one case together, so the tester's
            # one-model cache builds each case's network once instead of once per test
            metafunc.parametrize(fixture, items, ids=ids, scope="class")


@pytest.fixture(autouse=True)
def _seed_everything():
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    # an in-process `svseg demo --num-threads 1` (tests/test_cli.py) used to leave torch on one thread for every later
    # test of the session: the slow suite's learning floors then ran single-threaded (MSGA 183 s instead of ~95 s)
    torch.set_num_threads(threads)
