"""svseg data: dataset rules, datalists, MONAI readers and transforms, converters, demo data.

Main entry points:

* :func:`get_dataset` / :func:`list_datasets`: the rules (:class:`DatasetSpec`, module
  :mod:`svseg.data.specs`) of ``synapse``, ``lits``, ``acdc``, ``demo``.
* :func:`datalist_for`: the ``training`` / ``validation`` / ``test`` entries of a prepared folder
  (the demo data when ``data_root`` is None).
* :class:`H5Reader`, :class:`NPZReader`: MONAI readers for the TransUNet formats.
* :class:`SliceDataset`, :func:`volume_dataset`: 2D training slices and whole evaluation volumes.
* :func:`plan_dataset` / :func:`dataset_spec`: a user's data set folder (nnU-Net v2 raw, Decathlon,
  ``images/`` + ``masks/``) checked, measured and planned (``svseg plan``).
* :func:`prepare`: convert a downloaded data set (``synapse``, ``lits``, ``acdc``) or build the demo.
"""

from __future__ import annotations

from svseg.data.check import InputError, check_case, check_items, file_suffix, read_checked
from svseg.data.convert import ConversionError, prepare
from svseg.data.datalist import datalist_for, intensity_applied, read_datalist, resolve_dataset, write_datalist
from svseg.data.demo import prepare_demo
from svseg.data.folders import FolderDataset, open_folder
from svseg.data.images2d import Image2DReader
from svseg.io import read_image_2d
from svseg.data.plan import DatasetCheckError, dataset_spec, is_dataset_folder, load_plan, plan_datalist, plan_dataset
from svseg.data.readers import H5Reader, NPZReader
from svseg.data.slices import LoadVolumed, SliceDataset, volume_dataset, volume_transforms
from svseg.data.specs import DatasetSpec, get_dataset, kfold_split, list_datasets, register_dataset
from svseg.data.transforms import IntensityRuled, apply_intensity, intensity_transform

__all__ = [  # alphabetical
    "apply_intensity",
    "check_case",
    "check_items",
    "ConversionError",
    "datalist_for",
    "DatasetCheckError",
    "dataset_spec",
    "DatasetSpec",
    "file_suffix",
    "FolderDataset",
    "get_dataset",
    "H5Reader",
    "Image2DReader",
    "InputError",
    "intensity_applied",
    "intensity_transform",
    "IntensityRuled",
    "is_dataset_folder",
    "kfold_split",
    "list_datasets",
    "load_plan",
    "LoadVolumed",
    "NPZReader",
    "open_folder",
    "plan_datalist",
    "plan_dataset",
    "prepare",
    "prepare_demo",
    "read_checked",
    "read_image_2d",
    "read_datalist",
    "register_dataset",
    "resolve_dataset",
    "SliceDataset",
    "volume_dataset",
    "volume_transforms",
    "write_datalist",
]
