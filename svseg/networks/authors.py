"""Load the authors' trained weights into svseg's networks: :func:`load_authors_weights`.

The five papers' repositories name their parameters their own way (``encoder.layer1.0.conv1.weight``
against MONAI-style names here). One mapping per network lives in :mod:`svseg.networks.weight_maps`; this
function picks it by the network's class, applies it, and loads the result strictly, so a checkpoint of
another network or of another configuration fails with the missing and unexpected names listed.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["load_authors_weights", "AUTHORS_WEIGHT_MAPS"]

#: svseg network class -> module of :mod:`svseg.networks.weight_maps` holding its mapping
AUTHORS_WEIGHT_MAPS = {"SvANet": "svanet", "MSA2Net": "msa2net", "AFMA": "afma", "SA2Net": "sa2net", "MSGA": "msga"}


def load_authors_weights(net: torch.nn.Module, state_dict: Mapping[str, Any]) -> torch.nn.Module:
    """Load an authors' ``state_dict`` (their model's, or a checkpoint's ``"model"``/``"state_dict"`` entry)
    into ``net``, an svseg network of the matching configuration; returns ``net``.

    Raises:
        ValueError: ``net`` is not one of the five networks, or no mapping is written for it yet.
        RuntimeError: the mapped weights do not fit ``net`` (``load_state_dict`` strict), listing the names.
    """
    name = type(net).__name__
    if name not in AUTHORS_WEIGHT_MAPS:
        raise ValueError(f"no authors' weight mapping for {name}; known: {', '.join(AUTHORS_WEIGHT_MAPS)}")
    for key in ("model", "state_dict", "net"):
        if key in state_dict and isinstance(state_dict[key], Mapping):
            state_dict = state_dict[key]
            break
    state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    try:
        module = importlib.import_module(f"svseg.networks.weight_maps.{AUTHORS_WEIGHT_MAPS[name]}")
    except ModuleNotFoundError as e:
        raise ValueError(f"the authors' weight mapping for {name} is not written yet") from e
    net.load_state_dict(module.to_svseg(net, state_dict), strict=True)
    return net
