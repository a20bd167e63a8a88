"""The bundle stage: svseg's MONAI bundles (``bundles/<net>/configs/*.json``) and how to run them.

* :mod:`svseg.bundle.config`: the data set's rules that the JSON reads by name
  (``"$import svseg.bundle as sb"``, then ``"$sb.class_names(@dataset_name)"``); everything else of
  the recipe is spelled out in the JSON itself.
* :mod:`svseg.bundle.run`: :func:`bundle_dir`, :func:`run_bundle` (as ``python -m monai.bundle run``)
  and :func:`predict` (``svseg predict``).
* :mod:`svseg.bundle.model_info`: ``svseg_model.json``, the preprocessing a trained model carries.
* :mod:`svseg.bundle.staging`: what :func:`predict` does around the bundle run: the inputs staged (DICOM series
  as NIfTI), the cases ``--continue`` skips, the class names of ``<case>_statistics.json``.
* :mod:`svseg.bundle.demo`: :func:`run_demo` (``svseg demo``).
* :mod:`svseg.bundle.folds`: :func:`train_runs` (``svseg train --fold all`` / ``--bundle all``: folds and bundles
  in turn, each fold's validation probabilities kept for ``svseg find-best``).
* :mod:`svseg.bundle.ensemble`: :func:`predict_models` (``svseg predict`` with several folds or bundles, softmax
  averaged) and :func:`ensemble_folders` (``svseg ensemble``).
* :mod:`svseg.bundle.find_best`: :func:`find_best` (``svseg find-best``: networks, ensembles and keep-largest
  post-processing ranked on the cross-validation probabilities; ``best.json``, ``inference_instructions.txt``).
* :mod:`svseg.bundle.export`: :func:`export_run` (``svseg export``: a trained run as a bundle zip, TorchScript
  or ONNX), :func:`open_model` and :func:`predict_model` (``svseg predict --model NAME.zip``);
  :mod:`svseg.bundle.export_docs` writes the exported bundle's metadata, README and licence notes.
"""
from __future__ import annotations

from svseg.bundle.config import (
    DEMO,
    class_names,
    datalist,
    in_channels,
    inference_datalist,
    inference_mode,
    input_cases,
    input_files,
    input_mean,
    input_std,
    inputs_prepared,
    intensity_rule,
    num_classes,
    prepared_range,
    protocol,
    roi_size,
    slice_axis,
    spatial_dims,
)
from svseg.bundle.demo import run_demo
from svseg.bundle.ensemble import ensemble_folders, predict_models, resolve_models, run_checkpoints
from svseg.bundle.find_best import find_best, format_ranking
from svseg.bundle.folds import predict_validation, train_runs
from svseg.bundle.export import export_run, open_model, predict_model
from svseg.bundle.model_info import MODEL_INFO_NAME, SaveModelInfo, read_model_info
from svseg.bundle.run import bundle_dir, bundle_names, bundles_root, predict, run_bundle, train

__all__ = [
    "MODEL_INFO_NAME",
    "SaveModelInfo",
    "read_model_info",
    "DEMO",
    "bundle_dir",
    "bundle_names",
    "bundles_root",
    "class_names",
    "datalist",
    "ensemble_folders",
    "find_best",
    "format_ranking",
    "predict_models",
    "predict_validation",
    "resolve_models",
    "run_checkpoints",
    "train_runs",
    "export_run",
    "open_model",
    "predict_model",
    "in_channels",
    "inference_datalist",
    "input_cases",
    "input_mean",
    "input_std",
    "inference_mode",
    "inputs_prepared",
    "intensity_rule",
    "input_files",
    "num_classes",
    "predict",
    "prepared_range",
    "protocol",
    "roi_size",
    "run_bundle",
    "run_demo",
    "slice_axis",
    "spatial_dims",
    "train",
]
