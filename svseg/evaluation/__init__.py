"""svseg evaluation: per-case, per-class metrics of volumes and 2D images in two named protocols.

* ``transunet``: medpy-identical Dice and HD95 in voxel units, with TransUNet's empty rules;
* ``standard``: MONAI-identical spacing-aware HD95 (max of directed 95th percentiles) and ASSD,
  NaN for an empty reference.

Both give IoU next to Dice, and the dataset-level ("micro") Dice and IoU of the pooled TP/FP/FN
counts (SvANet's tables) next to the per-case means.

The papers' own protocols, each reproducing its authors' metric code (:mod:`~svseg.evaluation.protocols`):
``svanet`` (micro IoU/Dice and the tiny-object table), ``uctransnet`` (per-image Dice/IoU),
``awesome_unet`` (torchmetrics DSC, IoU, accuracy, precision, recall), ``msga`` (3D DSC per subject)
and ``afma`` (mIoU, global IoU, accuracy). 2D images (PNG, BMP, TIFF masks) are evaluated
as volumes are, with HD95 in pixels unless a pixel size is given.

Main entry points: :func:`evaluate_case`, :func:`write_report`, :func:`evaluate_folders`
(also ``python -m svseg.evaluation --pred P --ref R --output O --protocol standard``).

Modules, low to high (no cycles): :mod:`~svseg.evaluation.metrics` (binary-mask metrics) and
:mod:`~svseg.evaluation.labels` (label maps, class names) < :mod:`~svseg.evaluation.small_objects`
(per-object metrics) and :mod:`~svseg.evaluation.protocols` (the papers' protocols) < :mod:`~svseg.evaluation.evaluator` (cases, reports, folders) <
:mod:`~svseg.evaluation.handler` (:class:`VolumeMetricsHandler`, the bundles' MONAI evaluator handler).
:func:`match_files` is :func:`svseg.io.match_files`, re-exported.
"""
from __future__ import annotations

from svseg.evaluation.evaluator import METRIC_COLUMNS, evaluate_case, evaluate_folders, summarize, write_report
from svseg.evaluation.handler import VolumeMetricsHandler, evaluator_items, item_is_2d, meta_spacing
from svseg.evaluation.labels import class_name_list, load_label_volume, to_label_array
from svseg.evaluation.metrics import (
    PROTOCOLS,
    average_symmetric_surface_distance,
    case_iou,
    dice,
    hd95_max_directed,
    hd95_pooled,
    iou,
    micro_scores,
    overlap_counts,
    standard_case_metrics,
    surface,
    surface_distances,
    transunet_case_metrics,
)
from svseg.evaluation.protocols import (
    EVALUATION_PROTOCOLS,
    PAPER_PROTOCOLS,
    PROTOCOL_SOURCES,
    class_counts,
    largest_object_pct,
    protocol_case_rows,
    protocol_summary,
    svanet_e_measure,
    svanet_scores,
    svanet_tiny_table,
)
from svseg.evaluation.small_objects import SVANET_BINS, object_metrics, size_bin_labels, summarize_objects, write_object_table
from svseg.io import match_files

__all__ = [
    "EVALUATION_PROTOCOLS",
    "METRIC_COLUMNS",
    "PAPER_PROTOCOLS",
    "PROTOCOLS",
    "PROTOCOL_SOURCES",
    "class_counts",
    "largest_object_pct",
    "protocol_case_rows",
    "protocol_summary",
    "svanet_e_measure",
    "svanet_scores",
    "svanet_tiny_table",
    "SVANET_BINS",
    "average_symmetric_surface_distance",
    "case_iou",
    "class_name_list",
    "dice",
    "evaluate_case",
    "evaluate_folders",
    "hd95_max_directed",
    "hd95_pooled",
    "iou",
    "item_is_2d",
    "load_label_volume",
    "match_files",
    "meta_spacing",
    "micro_scores",
    "object_metrics",
    "overlap_counts",
    "size_bin_labels",
    "standard_case_metrics",
    "summarize",
    "summarize_objects",
    "surface",
    "surface_distances",
    "to_label_array",
    "transunet_case_metrics",
    "VolumeMetricsHandler",
    "evaluator_items",
    "write_object_table",
    "write_report",
]
