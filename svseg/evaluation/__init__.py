"""svseg evaluation: per-case, per-class volume metrics in two named protocols.

* ``transunet``: medpy-identical Dice and HD95 in voxel units, with TransUNet's empty rules;
* ``standard``: MONAI-identical spacing-aware HD95 (max of directed 95th percentiles) and ASSD,
  NaN for an empty reference.

Main entry points: :func:`evaluate_case`, :func:`write_report`, :func:`evaluate_folders`
(also ``python -m svseg.evaluation --pred P --ref R --output O --protocol standard``).
"""
from __future__ import annotations

from svseg.evaluation.evaluator import (
    METRIC_COLUMNS,
    class_name_list,
    evaluate_case,
    evaluate_folders,
    load_label_volume,
    match_files,
    summarize,
    write_report,
)
from svseg.evaluation.metrics import (
    PROTOCOLS,
    average_symmetric_surface_distance,
    dice,
    hd95_max_directed,
    hd95_pooled,
    standard_case_metrics,
    surface,
    surface_distances,
    transunet_case_metrics,
)
from svseg.evaluation.small_objects import SVANET_BINS, object_metrics, summarize_objects, size_bin_labels

__all__ = [
    "METRIC_COLUMNS",
    "PROTOCOLS",
    "SVANET_BINS",
    "average_symmetric_surface_distance",
    "class_name_list",
    "dice",
    "evaluate_case",
    "evaluate_folders",
    "hd95_max_directed",
    "hd95_pooled",
    "load_label_volume",
    "match_files",
    "object_metrics",
    "size_bin_labels",
    "standard_case_metrics",
    "summarize",
    "summarize_objects",
    "surface",
    "surface_distances",
    "transunet_case_metrics",
    "write_report",
]
