"""Per-case, per-class evaluation of label volumes, reports, and folder evaluation.

The Python API under ``svseg evaluate`` and under the bundles' ``evaluating`` run:

* :func:`evaluate_case` - one case: rows ``{case, class, dice, hd95, ...}`` for classes 1..K-1;
* :func:`write_report` - ``metrics.csv``, ``summary.json`` and ``boxplot.png`` (atomic writes);
* :func:`summarize` - the summary of a table in either protocol;
* :func:`evaluate_folders` - NIfTI predictions and references matched by case id
  (:func:`svseg.io.match_files`).

The metrics run on numpy/scipy arrays cropped to each class's bounding box (no torch tensors,
no MONAI transforms), so evaluating a 512x512x200 case stays well under 2 GB of resident memory.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from svseg.evaluation.labels import ClassNames, class_name_list, label_boxes, label_pair, load_label_volume, union_box
from svseg.evaluation.metrics import PROTOCOLS, normalize_spacing, standard_case_metrics, transunet_case_metrics
from svseg.evaluation.small_objects import object_metrics, summarize_objects, write_object_table
from svseg.errors import InputError
from svseg.io import PathLike, atomic_save_csv, atomic_save_json, match_files, to_json_safe
from svseg.report import boxplot_png

__all__ = [
    "evaluate_case",
    "summarize",
    "write_report",
    "evaluate_folders",
    "METRIC_COLUMNS",
]

#: column order of ``metrics.csv`` (extra columns follow)
METRIC_COLUMNS = ("case", "class", "dice", "hd95")

def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")


def evaluate_case(
    pred: Any,
    ref: Any,
    class_names: ClassNames,
    spacing: Sequence[float] | float | None = None,
    protocol: str = "standard",
    case: str | None = None,
) -> list[dict]:
    """Evaluate one case: every foreground class (label ids 1..K-1) on the whole volume.

    Args:
        pred: predicted label map (H, W[, D]) as numpy array or tensor; a leading channel of size 1
            is dropped and a leading channel of size K > 1 is reduced by argmax.
        ref: reference label map of the same shape.
        class_names: names indexed by label id, background first (or ``{id: name}``, or ``None`` for
            ``class_<id>`` up to the largest label present).
        spacing: voxel size per axis (``standard`` protocol; ``None`` = voxel units). Ignored by the
            ``transunet`` protocol, which is defined in voxel units.
        protocol: ``"standard"`` or ``"transunet"`` (see :mod:`svseg.evaluation.metrics`).
        case: case identifier written in the ``case`` column (default ``"case"``).

    Returns:
        One dict per class with keys ``case, class, dice, hd95`` then ``label, pred_voxels,
        ref_voxels``; the standard protocol adds ``assd`` (after ``hd95``) and, when ``spacing``
        is given, ``spacing`` (the voxel size per axis, so a report knows the units).
    """
    _check_protocol(protocol)
    p, r, names = label_pair(pred, ref, class_names)
    sp = normalize_spacing(spacing, p.ndim) if protocol == "standard" else None
    n_labels = len(names) - 1
    case_id = "case" if case is None else str(case)
    rows: list[dict] = []
    for label, boxes in enumerate(label_boxes(p, r, n_labels), start=1):
        box = union_box(boxes, p.shape, margin=1)
        if box is None:
            pm = rm = np.zeros((1,) * p.ndim, dtype=bool)
        else:
            pm, rm = p[box] == label, r[box] == label
        row: dict[str, Any] = {"case": case_id, "class": names[label]}
        if protocol == "transunet":
            d, h = transunet_case_metrics(pm, rm)
            row.update(dice=float(d), hd95=float(h))
        else:
            row.update(standard_case_metrics(pm, rm, sp))  # dice, hd95, assd
        row.update(label=label, pred_voxels=int(np.count_nonzero(pm)), ref_voxels=int(np.count_nonzero(rm)))
        if sp is not None:
            row["spacing"] = sp.tolist()
        rows.append(row)
    return rows


def _finite_mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def summarize(rows: Sequence[Mapping[str, Any]], protocol: str) -> dict:
    """Summary of a per-case, per-class table.

    ``transunet``: per class, the mean over all cases of Dice and HD95 (the (1, 0) / (0, 0) rules
    are already in the rows); overall, the mean of the class means (as the published tables).

    ``standard``: per class, means over the cases with a non-empty reference (``n_empty_ref`` counts
    the others, whose values are NaN); HD95/ASSD means use finite values only and ``n_hd95_inf``
    counts the cases with an empty prediction for a present class (infinite distance, Dice 0);
    ``n_fp_on_empty_ref`` counts predictions of a class absent from the reference. Overall: the
    mean of the class means.
    """
    _check_protocol(protocol)
    classes: dict[str, dict] = {}
    order: list[str] = []
    for row in rows:
        name = str(row["class"])
        if name not in classes:
            classes[name] = {"rows": []}
            order.append(name)
        classes[name]["rows"].append(row)
    per_class: dict[str, dict] = {}
    for name in order:
        rs = classes[name]["rows"]
        dices = [float(r["dice"]) for r in rs]
        hds = [float(r["hd95"]) for r in rs]
        if protocol == "transunet":
            per_class[name] = {
                "dice": float(np.mean(dices)),
                "hd95": float(np.mean(hds)),
                "n_cases": len(rs),
                "n_absent_ref_predicted": sum(1 for r in rs if r.get("ref_voxels", 1) == 0 and r.get("pred_voxels", 0) > 0),
                "n_empty_pred": sum(1 for r in rs if r.get("pred_voxels", 1) == 0),
            }
        else:
            present = [r for r in rs if not math.isnan(float(r["dice"]))]
            entry = {
                "dice": _finite_mean([float(r["dice"]) for r in present]),
                "hd95": _finite_mean([float(r["hd95"]) for r in present]),
                "n_cases": len(rs),
                "n_evaluated": len(present),
                "n_empty_ref": len(rs) - len(present),
                "n_hd95_inf": sum(1 for r in present if math.isinf(float(r["hd95"]))),
                "n_fp_on_empty_ref": sum(
                    1 for r in rs if math.isnan(float(r["dice"])) and r.get("pred_voxels", 0) > 0
                ),
            }
            if any("assd" in r for r in present):
                entry["assd"] = _finite_mean([float(r["assd"]) for r in present if "assd" in r])
            per_class[name] = entry
    overall: dict[str, Any] = {}
    for key in ("dice", "hd95", "assd"):
        vals = [v[key] for v in per_class.values() if v.get(key) is not None]
        if vals:
            overall[key] = float(np.mean(vals))
    overall["n_cases"] = len({str(r["case"]) for r in rows})
    overall["n_classes"] = len(per_class)
    return {"protocol": protocol, "classes": per_class, "overall": overall}


def _spacing_record(rows: Sequence[Mapping[str, Any]], protocol: str, spacing: Any) -> tuple[Any, bool]:
    """What ``summary.json`` says about the spacing, and whether distances are in spacing units.

    The caller's ``spacing`` wins; otherwise the per-case ``spacing`` the rows carry
    (``{case: spacing}``, ``"voxel units"`` for a case evaluated without one).
    """
    if protocol == "transunet":
        return "voxel units (the transunet protocol ignores spacing)", False
    if spacing is not None:
        return spacing, True
    per_case: dict[str, Any] = {}
    for row in rows:
        per_case.setdefault(str(row["case"]), row.get("spacing"))
    if all(v is None for v in per_case.values()):
        return "voxel units (no spacing given)", False
    return {c: ("voxel units" if v is None else v) for c, v in per_case.items()}, True


def write_report(
    rows: Sequence[Mapping[str, Any]],
    output_dir: PathLike,
    protocol: str,
    spacing: Any = None,
    plot: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """Write ``metrics.csv``, ``summary.json`` and ``boxplot.png`` into ``output_dir`` (atomically).

    Args:
        rows: rows from :func:`evaluate_case` (any number of cases).
        output_dir: folder to write into (created if needed).
        protocol: ``"standard"`` or ``"transunet"``.
        spacing: the spacing used, recorded in the summary (a sequence, or ``{case: spacing}``).
            Default: the per-case ``spacing`` of the rows (``{case: spacing}``), or ``"voxel units
            (no spacing given)"`` when no row has one. The ``transunet`` protocol records
            ``"voxel units"``.
        plot: also write the per-class box plot (:func:`svseg.report.boxplot_png`).
        extra: more entries for ``summary.json`` (e.g. small-object results); its ``files``
            entry is merged into the summary's.

    Returns:
        The summary dict (as written to ``summary.json``, with ``files`` added; non-finite numbers
        are kept as floats here, the file follows the JSON policy of :mod:`svseg.io`).
    """
    if not rows:
        raise ValueError("rows is empty: nothing to report.")
    out = Path(output_dir)
    summary = summarize(rows, protocol)
    record, physical = _spacing_record(rows, protocol, spacing)
    summary["spacing"] = to_json_safe(record)
    summary["units"] = {"hd95": "spacing units (mm for NIfTI)" if physical else "voxels"}
    extra = dict(extra or {})
    extra_files = extra.pop("files", {})
    summary.update(extra)
    df = pd.DataFrame(list(rows))
    df = df[list(METRIC_COLUMNS) + [c for c in df.columns if c not in METRIC_COLUMNS]]
    files = {"metrics": str(atomic_save_csv(df, out / "metrics.csv")), "summary": str(out / "summary.json")}
    if plot:
        files["boxplot"] = str(boxplot_png(rows, out / "boxplot.png", protocol=protocol, hd95_unit="mm" if physical else "voxels"))
    files.update(extra_files)
    summary["files"] = files
    atomic_save_json(summary, out / "summary.json")
    return summary


def evaluate_folders(
    pred_dir: PathLike,
    ref_dir: PathLike,
    output_dir: PathLike,
    protocol: str = "standard",
    class_names: ClassNames = None,
    spacing: Sequence[float] | float | None = None,
    small_objects: bool = False,
    size_reference: str = "slice",
    slice_axis: int = 2,
    allow_missing: bool = False,
    plot: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate NIfTI predictions against NIfTI references matched by case id.

    Args:
        pred_dir: folder of predicted label volumes (``.nii``/``.nii.gz``).
        ref_dir: folder of reference label volumes; pairs come from :func:`svseg.io.match_files`.
        output_dir: where ``metrics.csv``, ``summary.json``, ``boxplot.png`` (and
            ``small_objects.csv`` when asked) are written.
        protocol: ``"standard"`` (spacing-aware, from each reference header unless ``spacing`` is
            given) or ``"transunet"`` (voxel units, medpy-identical).
        class_names: names indexed by label id, background first; ``None`` = ``class_<id>`` up to the
            largest label found in the references.
        spacing: override of the voxel size for every case (standard protocol).
        small_objects: also compute the per-object / per-size-bin metrics of
            :mod:`svseg.evaluation.small_objects`.
        size_reference: ``"slice"`` or ``"volume"``: what an object's size is a share of.
        slice_axis: the slice axis for ``size_reference="slice"``.
        allow_missing: skip references without prediction instead of raising.
        plot: write the box plot.
        progress: show a progress bar (tqdm) on stderr.

    Returns:
        The summary dict written to ``summary.json`` (with a ``files`` entry).
    """
    _check_protocol(protocol)
    pairs = match_files(pred_dir, ref_dir, allow_missing=allow_missing)
    if class_names is None:
        top = 0
        for _, _, rpath in pairs:
            labels, _, _ = load_label_volume(rpath)
            top = max(top, int(labels.max(initial=0)))
            del labels
        names = class_name_list(None, top)
    else:
        names = class_name_list(class_names, 0)
    rows: list[dict] = []
    so_rows: list[dict] = []
    for case, ppath, rpath in tqdm(pairs, desc="evaluate", unit="case", disable=not progress):
        ref, ref_affine, ref_spacing = load_label_volume(rpath)
        pred, pred_affine, _ = load_label_volume(ppath)
        if pred.shape != ref.shape:
            raise ValueError(f"case {case}: prediction {ppath.name} has shape {pred.shape}, reference {rpath.name} {ref.shape}.")
        for path, labels in ((rpath, ref), (ppath, pred)):
            unknown = sorted(int(v) for v in np.unique(labels) if int(v) >= len(names) or v < 0)
            if unknown:
                listed = f"--classes has {len(names)} names" if class_names is not None else f"{len(names)} classes"
                raise InputError(path, f"label ids {unknown} are not in the class list 0..{len(names) - 1} "
                                       f"({', '.join(names)}; {listed})")
        if not np.allclose(pred_affine, ref_affine, atol=1e-3):
            warnings.warn(f"case {case}: prediction and reference affines differ; voxels are compared as stored.", stacklevel=2)
        sp = ref_spacing if spacing is None else spacing
        rows.extend(evaluate_case(pred, ref, names, spacing=sp, protocol=protocol, case=case))
        if small_objects:
            so_rows.extend(object_metrics(pred, ref, names, case=case, size_reference=size_reference, axis=slice_axis))
        del pred, ref
    extra: dict[str, Any] = {"cases": [c for c, _, _ in pairs]}
    out = Path(output_dir)
    if small_objects:
        extra["small_objects"] = {**summarize_objects(so_rows), "size_reference": size_reference}
        extra["files"] = {"small_objects": str(write_object_table(so_rows, out / "small_objects.csv"))}
    return write_report(rows, out, protocol, plot=plot, extra=extra)
