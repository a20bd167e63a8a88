"""The bundle stage: svseg's MONAI bundles (``bundles/<net>/configs/*.json``) and how to run them.

* :mod:`svseg.bundle.config`: the data set's rules that the JSON reads by name
  (``"$import svseg.bundle as sb"``, then ``"$sb.class_names(@dataset_name)"``); everything else of
  the recipe is spelled out in the JSON itself.
* :mod:`svseg.bundle.run`: :func:`bundle_dir`, :func:`run_bundle` (as ``python -m monai.bundle run``)
  and :func:`predict` (``svseg predict``).
* :mod:`svseg.bundle.model_info`: ``svseg_model.json``, the preprocessing a trained model carries.
* :mod:`svseg.bundle.demo`: :func:`run_demo` (``svseg demo``).
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
