"""The authors' checkpoints -> svseg's networks: one mapping module per network.

Each module (``svanet``, ``msa2net``, ``afma``, ``sa2net``, ``msga``) defines ``to_svseg(net, state_dict) ->
dict``: the authors' parameter and buffer names (and, where the layouts differ, shapes) turned into the
``state_dict`` of the svseg network ``net``. :func:`svseg.networks.load_authors_weights` picks the module by
the network's class. The mappings were written from reading the authors' code; the fidelity tests
(``tests/fidelity/``) check them against the authors' models, output for output.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Callable

__all__ = ["rename_keys"]


def rename_keys(state_dict: Mapping[str, Any], rules: Iterable[tuple[str, str | Callable]],
                unused: Iterable[str] = ()) -> dict:
    """``state_dict`` with every key renamed by the first of ``rules`` (``(pattern, replacement)`` for
    :func:`re.subn`, anchored patterns) that matches it, keys matching a pattern of ``unused`` dropped."""
    drop = [re.compile(p) for p in unused]
    out = {}
    for key, value in state_dict.items():
        if any(p.match(key) for p in drop):
            continue
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key, count=1)
            if n:
                key = new
                break
        out[key] = value
    return out
