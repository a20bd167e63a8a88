"""The random states a training run must carry over a kill: Python, NumPy, torch and MONAI transforms.

ignite and MONAI save ``state_dict`` objects; neither saves the global RNG states nor the
``numpy.random.RandomState`` of each MONAI random transform. These helpers turn them into plain
containers and tensors (so ``torch.load(..., weights_only=True)`` reads them back) and restore them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["collect_rng_state", "restore_rng_state", "transform_random_states", "random_state_to_dict",
           "random_state_from_dict"]


def collect_rng_state() -> dict:
    """Python, NumPy and torch (CPU and initialised CUDA) global RNG states, as plain
    containers and tensors so that ``torch.load(..., weights_only=True)`` can read them back."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    """Inverse of :func:`collect_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32) if torch.is_tensor(npst["keys"]) else np.asarray(npst["keys"], np.uint32)
    np.random.set_state((npst["name"], keys, npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def _collect_random_states(obj: Any, found: list, seen: set) -> None:
    """Collect the ``numpy.random.RandomState`` objects of MONAI randomisable transforms
    (attribute ``R``) reachable from ``obj``, in a deterministic order (as ``monai.data.set_rnd``)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _collect_random_states(item, found, seen)
        return
    if isinstance(obj, (str, bytes, int, float, torch.Tensor, np.ndarray)) or not hasattr(obj, "__dict__"):
        return
    if hasattr(obj, "set_random_state") and isinstance(getattr(obj, "R", None), np.random.RandomState):
        found.append(obj.R)
    for key, value in vars(obj).items():
        if not (key.startswith("__") or key == "R"):
            _collect_random_states(value, found, seen)


def transform_random_states(dataloader: Any) -> list:
    """The ``RandomState`` objects of the random transforms of ``dataloader.dataset``, in a fixed
    order; empty when the loader has workers (their transform seeds are re-derived from the torch
    RNG at every epoch, so the global RNG state already covers them)."""
    dataset = getattr(dataloader, "dataset", None)
    if dataset is None or getattr(dataloader, "num_workers", 0) != 0:
        return []
    found: list = []
    _collect_random_states(dataset, found, set())
    return found


def random_state_to_dict(rs: np.random.RandomState) -> dict:
    """A ``RandomState``'s state as plain values and a tensor (``weights_only``-loadable)."""
    name, keys, pos, has_gauss, gauss = rs.get_state()
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def random_state_from_dict(rs: np.random.RandomState, d: Mapping) -> None:
    """Inverse of :func:`random_state_to_dict`: set ``rs`` to the saved state."""
    rs.set_state((d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["gauss"]))
