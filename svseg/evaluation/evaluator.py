"""Per-case, per-class evaluation of label volumes, reports, and folder evaluation.

The Python API under ``svseg evaluate`` and under the bundles' ``evaluating`` run:

* :func:`evaluate_case` - one case: rows ``{case, class, dice, hd95, ..., iou, tp, fp, fn}`` for
  classes 1..K-1, on a 3D volume or a 2D image;
* :func:`write_report` - ``metrics.csv``, ``summary.json`` and ``boxplot.png`` (atomic writes);
* :func:`summarize` - the summary of a table in either protocol: per-case means, and the
  dataset-level ("micro") Dice and IoU of the pooled ``tp, fp, fn`` counts that SvANet reports;
* the papers' protocols ``svanet``, ``uctransnet``, ``awesome_unet``, ``msga``, ``afma``
  (:mod:`svseg.evaluation.protocols`): :func:`evaluate_case`, :func:`summarize` and
  :func:`write_report` hand them to that module, the rest is shared;
* :func:`evaluate_folders` - NIfTI volumes or 2D masks (PNG, BMP, TIFF; JPEG references),
  predictions and references matched by case id (:func:`svseg.io.match_files`).

2D images are evaluated like volumes. Their files carry no pixel size: distances are in pixels
(``summary.json``: ``"units": {"hd95": "pixels"}``) unless a spacing is given.

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
from svseg.evaluation.metrics import (
    case_iou,
    micro_scores,
    normalize_spacing,
    overlap_counts,
    standard_case_metrics,
    transunet_case_metrics,
)
from svseg.evaluation.protocols import (
    PROTOCOL_SOURCES,
    check_protocol,
    is_paper_protocol,
    protocol_case_rows,
    protocol_summary,
)
from svseg.evaluation.small_objects import object_metrics, summarize_objects, write_object_table
from svseg.errors import InputError
from svseg.io import NIFTI_SUFFIXES, PathLike, atomic_save_csv, atomic_save_json, match_files, to_json_safe
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
    check_protocol(protocol)


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
        pred: predicted label map, 3D (H, W, D) or 2D (H, W), as numpy array or tensor; a leading
            channel of a 3D map is dropped (size 1) or reduced by argmax (size K > 1). A 2D map is
            given without channel (a (1, H, W) array is a one-slice volume).
        ref: reference label map of the same shape.
        class_names: names indexed by label id, background first (or ``{id: name}``, or ``None`` for
            ``class_<id>`` up to the largest label present).
        spacing: voxel (pixel) size per axis, 3 values for a volume, 2 for an image (``standard``
            protocol; ``None`` = voxel/pixel units). Ignored by the ``transunet`` protocol, which is
            defined in voxel units.
        protocol: ``"standard"`` or ``"transunet"`` (see :mod:`svseg.evaluation.metrics`), or a
            paper protocol (:mod:`svseg.evaluation.protocols`, rows of
            :func:`~svseg.evaluation.protocols.protocol_case_rows`; ``spacing`` unused).
        case: case identifier written in the ``case`` column (default ``"case"``).

    Returns:
        One dict per class with keys ``case, class, dice, hd95`` then ``iou, label, pred_voxels,
        ref_voxels, tp, fp, fn, ndim``; the standard protocol adds ``assd`` (after ``hd95``) and,
        when ``spacing`` is given, ``spacing`` (the voxel size per axis, so a report knows the
        units). ``iou`` follows the empty rules of the protocol's Dice
        (:func:`svseg.evaluation.metrics.case_iou`); ``tp, fp, fn`` are the voxel (pixel) counts of
        the overlap, prediction only and reference only, summed by :func:`summarize` into the
        dataset-level scores; ``ndim`` is 2 for an image, 3 for a volume (pixels or voxels).
    """
    _check_protocol(protocol)
    if is_paper_protocol(protocol):
        return protocol_case_rows(pred, ref, class_names, protocol, case=case)
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
        tp, fp, fn = overlap_counts(pm, rm)
        row.update(iou=case_iou(tp, fp, fn, protocol), label=label, pred_voxels=tp + fp, ref_voxels=tp + fn,
                   tp=tp, fp=fp, fn=fn, ndim=p.ndim)
        if sp is not None:
            row["spacing"] = sp.tolist()
        rows.append(row)
    return rows


def _finite_mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _micro(rs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summed ``tp, fp, fn`` of rows and the micro Dice/IoU they give; empty when a row lacks the counts
    (a table written before svseg recorded them)."""
    if not rs or not all(all(k in r for k in ("tp", "fp", "fn")) for r in rs):
        return {}
    tp, fp, fn = (int(sum(int(r[k]) for r in rs)) for k in ("tp", "fp", "fn"))
    micro_dice, micro_iou = micro_scores(tp, fp, fn)
    return {"micro_dice": micro_dice, "micro_iou": micro_iou, "tp": tp, "fp": fp, "fn": fn}


def summarize(rows: Sequence[Mapping[str, Any]], protocol: str) -> dict:
    """Summary of a per-case, per-class table.

    ``transunet``: per class, the mean over all cases of Dice, IoU and HD95 (the (1, 0) / (0, 0)
    rules are already in the rows); overall, the mean of the class means (as the published tables).

    ``standard``: per class, means over the cases with a non-empty reference (``n_empty_ref`` counts
    the others, whose values are NaN); HD95/ASSD means use finite values only and ``n_hd95_inf``
    counts the cases with an empty prediction for a present class (infinite distance, Dice 0);
    ``n_fp_on_empty_ref`` counts predictions of a class absent from the reference. Overall: the
    mean of the class means.

    Both protocols, when the rows carry ``tp, fp, fn``: per class, their sums over *all* cases
    (empty references included: a false positive there counts) and the dataset-level ("micro")
    ``micro_dice = 2TP / (2TP + FP + FN)`` and ``micro_iou = TP / (TP + FP + FN)``, SvANet's numbers
    (null for a class that appears nowhere); overall, the mean over classes of the class micro
    scores (as a mean IoU over classes). The per-case means stay under ``dice`` and ``iou``.

    A paper protocol: :func:`svseg.evaluation.protocols.protocol_summary`.
    """
    _check_protocol(protocol)
    if is_paper_protocol(protocol):
        return protocol_summary(rows, protocol)
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
            entry = {
                "dice": float(np.mean(dices)),
                "hd95": float(np.mean(hds)),
                "n_cases": len(rs),
                "n_absent_ref_predicted": sum(1 for r in rs if r.get("ref_voxels", 1) == 0 and r.get("pred_voxels", 0) > 0),
                "n_empty_pred": sum(1 for r in rs if r.get("pred_voxels", 1) == 0),
            }
            if all("iou" in r for r in rs):
                entry["iou"] = float(np.mean([float(r["iou"]) for r in rs]))
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
            if any("iou" in r for r in present):
                entry["iou"] = _finite_mean([float(r["iou"]) for r in present if "iou" in r])
        entry.update(_micro(rs))
        per_class[name] = entry
    overall: dict[str, Any] = {}
    for key in ("dice", "hd95", "assd", "iou", "micro_dice", "micro_iou"):
        vals = [v[key] for v in per_class.values() if v.get(key) is not None]
        if vals:
            overall[key] = float(np.mean(vals))
    overall["n_cases"] = len({str(r["case"]) for r in rows})
    overall["n_classes"] = len(per_class)
    return {"protocol": protocol, "classes": per_class, "overall": overall}


def _all_2d(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every row comes from a 2D image (rows without ``ndim`` are volumes)."""
    return bool(rows) and all(int(r.get("ndim", 3)) == 2 for r in rows)


def _spacing_record(rows: Sequence[Mapping[str, Any]], protocol: str, spacing: Any) -> tuple[Any, bool]:
    """What ``summary.json`` says about the spacing, and whether distances are in spacing units.

    The caller's ``spacing`` wins; otherwise the per-case ``spacing`` the rows carry
    (``{case: spacing}``, ``"voxel units"`` or, for a 2D image, ``"pixel units"`` for a case
    evaluated without one).
    """
    grid = "pixel units" if _all_2d(rows) else "voxel units"
    if is_paper_protocol(protocol):
        return f"{grid} (the {protocol} protocol measures no distances)", False
    if protocol == "transunet":
        return f"{grid} (the transunet protocol ignores spacing)", False
    if spacing is not None:
        return spacing, True
    per_case: dict[str, Any] = {}
    two_d: dict[str, bool] = {}
    for row in rows:
        per_case.setdefault(str(row["case"]), row.get("spacing"))
        two_d.setdefault(str(row["case"]), int(row.get("ndim", 3)) == 2)
    if all(v is None for v in per_case.values()):
        return f"{grid} (no spacing given)", False
    return {c: (("pixel units" if two_d[c] else "voxel units") if v is None else v) for c, v in per_case.items()}, True


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
        protocol: ``"standard"``, ``"transunet"`` or a paper protocol (``units.hd95`` then says
            ``"not computed"`` and the ``hd95`` column is NaN).
        spacing: the spacing used, recorded in the summary (a sequence, or ``{case: spacing}``).
            Default: the per-case ``spacing`` of the rows (``{case: spacing}``), or ``"voxel units
            (no spacing given)"`` when no row has one (``"pixel units ..."`` when every row is a 2D
            image). The ``transunet`` protocol records ``"voxel units"`` (``"pixel units"``).
            ``units.hd95`` says ``"voxels"``, ``"pixels"`` or ``"spacing units (mm for NIfTI)"``.
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
    grid_unit = "pixels" if _all_2d(rows) else "voxels"
    summary["units"] = {"hd95": "spacing units (mm for NIfTI)" if physical else grid_unit}
    if is_paper_protocol(protocol):
        summary["units"] = {"hd95": f"not computed ({PROTOCOL_SOURCES[protocol].split(' ')[0]} reports no HD95)"}
    extra = dict(extra or {})
    extra_files = extra.pop("files", {})
    summary.update(extra)
    df = pd.DataFrame(list(rows))
    df = df[list(METRIC_COLUMNS) + [c for c in df.columns if c not in METRIC_COLUMNS]]
    files = {"metrics": str(atomic_save_csv(df, out / "metrics.csv")), "summary": str(out / "summary.json")}
    if plot:
        plot_unit = ("spacing units" if _all_2d(rows) else "mm") if physical else grid_unit
        files["boxplot"] = str(boxplot_png(rows, out / "boxplot.png", protocol=protocol, hd95_unit=plot_unit))
    files.update(extra_files)
    summary["files"] = files
    atomic_save_json(summary, out / "summary.json")
    return summary


def _case_spacing(path: Path, labels: np.ndarray, file_spacing: Any, spacing: Any) -> Any:
    """The spacing of one case: ``spacing`` for a 2D image file (which carries none; ``None`` =
    pixels); for a NIfTI file its header spacing, unless ``spacing`` has one value for every axis of
    that file (or is a single number), the override of earlier versions."""
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        return spacing
    if spacing is None:
        return file_spacing
    return spacing if np.size(spacing) in (1, labels.ndim) else file_spacing


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
    """Evaluate predicted label maps against references matched by case id: NIfTI volumes or 2D masks.

    Args:
        pred_dir: folder of predicted label maps: ``.nii``/``.nii.gz`` volumes, or 2D PNG/BMP/TIFF
            files of class ids (svseg writes ``<case>_seg.png`` for 2D inputs).
        ref_dir: folder of reference label maps (2D: also JPEG); pairs come from
            :func:`svseg.io.match_files` (``tile03_seg.png`` <-> ``tile03.png``). 2D masks are read by
            :func:`svseg.data.read_image_2d` (``mask=True``: palette index or grey value = class id,
            a 0/255 mask is binary).
        output_dir: where ``metrics.csv``, ``summary.json``, ``boxplot.png`` (and
            ``small_objects.csv`` when asked) are written.
        protocol: ``"standard"`` (spacing-aware, from each reference header unless ``spacing`` is
            given), ``"transunet"`` (voxel units, medpy-identical) or a paper protocol
            (``svanet``, ``uctransnet``, ``awesome_unet``, ``msga``, ``afma``:
            :mod:`svseg.evaluation.protocols`).
        class_names: names indexed by label id, background first; ``None`` = ``class_<id>`` up to the
            largest label found in the references.
        spacing: pixel size (row, column) of the 2D files, which carry none: ``None`` = HD95 in
            pixels (``summary.json`` says ``"pixels"``). NIfTI files keep their header spacing, unless
            ``spacing`` has one value per axis of the volume (or is one number): then it overrides
            the header for every NIfTI case, as before 2D support.
        small_objects: also compute the per-object / per-size-bin metrics of
            :mod:`svseg.evaluation.small_objects`; a 2D object's size is its share of the image
            (SvANet's bins).
        size_reference: ``"slice"`` or ``"volume"``: what a 3D object's size is a share of (a 2D
            image is its own slice; the summary then records ``"image"``).
        slice_axis: the slice axis for ``size_reference="slice"``.
        allow_missing: skip references without prediction instead of raising.
        plot: write the box plot.
        progress: show a progress bar (tqdm) on stderr.

    Returns:
        The summary dict written to ``summary.json`` (with a ``files`` entry).

    Raises:
        ValueError: a prediction and its reference differ in shape (the message names both files),
            or a file holds label ids outside the class list (:class:`svseg.errors.InputError`).
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
        if pred_affine.shape == ref_affine.shape and not np.allclose(pred_affine, ref_affine, atol=1e-3):
            warnings.warn(f"case {case}: prediction and reference affines differ; voxels are compared as stored.", stacklevel=2)
        sp = _case_spacing(rpath, ref, ref_spacing, spacing)
        try:
            rows.extend(evaluate_case(pred, ref, names, spacing=sp, protocol=protocol, case=case))
        except ValueError as e:
            raise ValueError(f"case {case} ({rpath.name}): {e}") from e
        if small_objects:
            so_rows.extend(object_metrics(pred, ref, names, case=case, size_reference=size_reference, axis=slice_axis))
        del pred, ref
    extra: dict[str, Any] = {"cases": [c for c, _, _ in pairs]}
    out = Path(output_dir)
    if small_objects:
        reference = "image" if _all_2d(rows) else size_reference
        extra["small_objects"] = {**summarize_objects(so_rows), "size_reference": reference}
        extra["files"] = {"small_objects": str(write_object_table(so_rows, out / "small_objects.csv"))}
    return write_report(rows, out, protocol, plot=plot, extra=extra)
