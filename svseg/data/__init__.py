"""svseg data: dataset rules, datalists, MONAI readers and transforms, converters, demo data.

Main entry points:

* :func:`get_dataset` / :func:`list_datasets`: the rules (:class:`DatasetSpec`, module
  :mod:`svseg.data.specs`) of ``synapse``, ``lits``, ``acdc``, ``demo``.
* :func:`datalist_for`: the ``training`` / ``validation`` / ``test`` entries of a prepared folder
  (the demo data when ``data_root`` is None).
* :class:`H5Reader`, :class:`NPZReader`: MONAI readers for the TransUNet formats.
* :class:`SliceDataset`, :func:`volume_dataset`: 2D training slices and whole evaluation volumes.
* :func:`prepare`: convert a downloaded data set (``synapse``, ``lits``, ``acdc``) or build the demo.
"""

from __future__ import annotations

from svseg.data.convert import ConversionError, prepare
from svseg.data.datalist import datalist_for, read_datalist, resolve_dataset, write_datalist
from svseg.data.demo import prepare_demo
from svseg.data.readers import H5Reader, NPZReader
from svseg.data.slices import LoadVolumed, SliceDataset, volume_dataset, volume_transforms
from svseg.data.specs import DatasetSpec, get_dataset, kfold_split, list_datasets, register_dataset
from svseg.data.transforms import intensity_transform

__all__ = [
    "DatasetSpec",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "kfold_split",
    "datalist_for",
    "read_datalist",
    "write_datalist",
    "resolve_dataset",
    "H5Reader",
    "NPZReader",
    "SliceDataset",
    "LoadVolumed",
    "volume_dataset",
    "volume_transforms",
    "intensity_transform",
    "prepare_demo",
    "prepare",
    "ConversionError",
]
