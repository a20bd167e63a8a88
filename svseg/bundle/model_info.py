"""A trained model carries its preprocessing: ``svseg_model.json`` beside its weights.

MONAI's ``CheckpointSaver`` stores weights only; a ``model.pt`` alone does not say which data
set's classes and intensity rule it was trained with, so predicting with it needs the user to
repeat them, and a wrong guess gives a wrong segmentation with exit code 0. Every svseg training
run therefore writes ``<ckpt_dir>/svseg_model.json`` when it starts (:class:`SaveModelInfo`, a
handler in each bundle's ``train.json``): the network class, the data set, its class names, its
intensity rule and the network's input normalisation and size. ``svseg predict --checkpoint``
reads it (:func:`read_model_info`) and needs no ``--dataset`` to be right.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from svseg import __version__
from svseg.io import atomic_save_json
from svseg.runtime import is_rank0

__all__ = ["MODEL_INFO_NAME", "SaveModelInfo", "read_model_info", "model_info_path"]

MODEL_INFO_NAME = "svseg_model.json"


class SaveModelInfo:
    """Write ``svseg_model.json`` (rank 0, atomically) when training starts.

    Config snippet (``train.json``, in ``train#handlers``)::

        {"_target_": "svseg.bundle.SaveModelInfo", "ckpt_dir": "@ckpt_dir",
         "info": {"network": "$type(@network_def).__name__", "dataset_name": "@dataset_name", ...}}

    Args:
        ckpt_dir: the folder of ``model.pt`` (also written beside ``checkpoint_latest.pt`` by the caller's choice).
        info: what a prediction needs: ``network``, ``dataset_name``, ``class_names``, ``intensity_rule``,
            ``intensity_mean``, ``intensity_std``, ``roi_size``, ``inference_mode``.
    """

    def __init__(self, ckpt_dir: str | os.PathLike, info: Mapping[str, Any]) -> None:
        self.path = Path(ckpt_dir) / MODEL_INFO_NAME
        self.info = dict(info)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        if is_rank0():
            atomic_save_json({**self.info, "svseg_version": __version__}, self.path)


def model_info_path(checkpoint: str | os.PathLike) -> Path | None:
    """The ``svseg_model.json`` that belongs to a weights file: beside it, or in ``models/`` beside it."""
    ckpt = Path(checkpoint)
    for candidate in (ckpt.parent / MODEL_INFO_NAME, ckpt.parent / "models" / MODEL_INFO_NAME):
        if candidate.is_file():
            return candidate
    return None


def read_model_info(checkpoint: str | os.PathLike) -> dict | None:
    """The recorded preprocessing of ``checkpoint``, or ``None`` when it has none (weights from elsewhere)."""
    path = model_info_path(checkpoint)
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path.name}: not valid JSON ({e})") from e
