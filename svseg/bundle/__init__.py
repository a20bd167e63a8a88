"""Glue between the MONAI bundles under ``bundles/`` and the svseg packages.

Configs reach this package with ``_target_`` and ``$`` expressions (``$import svseg.bundle as sb``),
so that every bundle's JSON stays short and dataset rules live in one place.
"""
from __future__ import annotations

from svseg.bundle.components import (
    PeriodicValidation,
    SliceTrainDataset,
    class_names,
    datalist,
    destroy_distributed,
    effective_dataset,
    evaluate_volumes,
    inference_datalist,
    inference_mode,
    init_distributed,
    num_classes,
    poly_scheduler,
    predict_volumes,
    protocol,
    rank_zero_handlers,
    resolve_device,
    roi_size,
    scaled_lr,
    slice_inferer,
    slice_transforms,
    train_dataset,
    val_dataset,
    volume_transforms,
)

__all__ = [
    "PeriodicValidation",
    "SliceTrainDataset",
    "class_names",
    "datalist",
    "destroy_distributed",
    "effective_dataset",
    "evaluate_volumes",
    "inference_datalist",
    "inference_mode",
    "init_distributed",
    "num_classes",
    "poly_scheduler",
    "predict_volumes",
    "protocol",
    "rank_zero_handlers",
    "resolve_device",
    "roi_size",
    "scaled_lr",
    "slice_inferer",
    "slice_transforms",
    "train_dataset",
    "val_dataset",
    "volume_transforms",
]
