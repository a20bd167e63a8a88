"""Per-case, per-class evaluation of label volumes, reports, and folder evaluation.

The Python API under ``svseg evaluate`` and under the bundles' ``evaluating`` run:

* :func:`evaluate_case` - one case: rows ``{case, class, dice, hd95, ...}`` for classes 1..K-1;
* :func:`write_report` - ``metrics.csv``, ``summary.json`` and ``boxplot.png`` (atomic writes);
* :func:`summarize` - the summary of a table in either protocol;
* :func:`evaluate_folders` - NIfTI predictions and references matched by file name.

This module imports neither torch nor MONAI, so evaluating a 512x512x200 case stays well under
2 GB of resident memory.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from svseg.evaluation.metrics import PROTOCOLS, standard_case_metrics, transunet_case_metrics

__all__ = [
    "class_name_list",
    "evaluate_case",
    "summarize",
    "write_report",
    "load_label_volume",
    "match_files",
    "evaluate_folders",
    "METRIC_COLUMNS",
]

#: column order of ``metrics.csv`` (extra columns follow)
METRIC_COLUMNS = ("case", "class", "dice", "hd95")

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: name endings removed when an exact file-name match fails (``case01_pred.nii.gz`` <-> ``case01.nii.gz``)
_STRIP_ENDINGS = ("_pred", "_prediction", "_seg", "_gt", "_label", "_labels", "_mask", "_0000")


def class_name_list(class_names: Sequence[str] | Mapping[int, str] | None, max_label: int) -> list[str]:
    """Normalise class names to a list indexed by label id (index 0 = background).

    Args:
        class_names: a sequence (index = label id, background first), a mapping ``{label id: name}``,
            or ``None`` (names ``class_1`` ... ``class_{max_label}``).
        max_label: the largest label id present in the data (used when ``class_names`` is ``None``).
    """
    if class_names is None:
        return ["background"] + [f"class_{i}" for i in range(1, max(int(max_label), 0) + 1)]
    if isinstance(class_names, Mapping):
        if not class_names:
            raise ValueError("class_names is an empty mapping.")
        ids = [int(k) for k in class_names]
        if min(ids) < 0:
            raise ValueError(f"class_names has a negative label id: {min(ids)}.")
        names = [f"class_{i}" for i in range(max(ids) + 1)]
        names[0] = "background"
        for k, v in class_names.items():
            names[int(k)] = str(v)
        return names
    if isinstance(class_names, str):
        raise ValueError("class_names must be a sequence of names (background first), not a single string.")
    names = [str(n) for n in class_names]
    if len(names) < 2:
        raise ValueError(f"class_names needs the background and at least one class, got {names}.")
    return names


def _to_label_array(x: Any, name: str) -> np.ndarray:
    """A label volume as a non-negative integer numpy array; a leading channel of 1 is dropped,
    a leading channel of K > 1 (one-hot or scores) is reduced by argmax."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim == 4:
        x = np.argmax(x, axis=0)
    if x.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D or 3D label map (optionally with a leading channel), got shape {x.shape}.")
    if x.dtype == bool:
        return x.astype(np.uint8)
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} holds non-finite values; expected integer label ids.")
        xi = np.rint(x)
        if np.any(xi != x):
            raise ValueError(f"{name} holds non-integer values; expected integer label ids.")
        x = xi
    elif not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} has dtype {x.dtype}; expected integer label ids.")
    if x.size and x.min() < 0:
        raise ValueError(f"{name} holds negative label ids (min {x.min()}).")
    top = int(x.max()) if x.size else 0
    dtype = np.uint8 if top < 256 else (np.uint16 if top < 65536 else np.int64)
    return x.astype(dtype, copy=False)


def _union_box(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None, shape) -> tuple[slice, ...] | None:
    if a is None and b is None:
        return None
    boxes = [s for s in (a, b) if s is not None]
    return tuple(
        slice(max(min(s[i].start for s in boxes) - 1, 0), min(max(s[i].stop for s in boxes) + 1, shape[i]))
        for i in range(len(shape))
    )


def evaluate_case(
    pred: Any,
    ref: Any,
    class_names: Sequence[str] | Mapping[int, str] | None,
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
        ref_voxels`` (and ``assd`` for the standard protocol).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    p = _to_label_array(pred, "pred")
    r = _to_label_array(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}.")
    names = class_name_list(class_names, max(int(p.max(initial=0)), int(r.max(initial=0))))
    n_labels = len(names) - 1
    # one pass per volume gives the bounding box of every label
    boxes_p = ndimage.find_objects(p, max_label=n_labels)
    boxes_r = ndimage.find_objects(r, max_label=n_labels)
    case_id = "case" if case is None else str(case)
    rows: list[dict] = []
    for label in range(1, n_labels + 1):
        box = _union_box(boxes_p[label - 1], boxes_r[label - 1], p.shape)
        if box is None:
            pm = rm = np.zeros((1,) * p.ndim, dtype=bool)
        else:
            pm, rm = p[box] == label, r[box] == label
        row: dict[str, Any] = {"case": case_id, "class": names[label]}
        if protocol == "transunet":
            d, h = transunet_case_metrics(pm, rm)
            row.update(dice=float(d), hd95=float(h))
        else:
            row.update(standard_case_metrics(pm, rm, spacing))
            row = {k: row[k] for k in ("case", "class", "dice", "hd95", "assd")}
        row.update(label=label, pred_voxels=int(np.count_nonzero(pm)), ref_voxels=int(np.count_nonzero(rm)))
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
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
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


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _boxplot(rows: Sequence[Mapping[str, Any]], summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    names = list(summary["classes"])
    dice_data, hd_data = [], []
    for name in names:
        rs = [r for r in rows if str(r["class"]) == name]
        dice_data.append([float(r["dice"]) for r in rs if math.isfinite(float(r["dice"]))])
        hd_data.append([float(r["hd95"]) for r in rs if math.isfinite(float(r["hd95"]))])
    unit = "voxels" if summary["protocol"] == "transunet" else "spacing units (mm)"
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.1 * len(names) + 3), 4.5), constrained_layout=True)
    for ax, data, title in ((axes[0], dice_data, "Dice"), (axes[1], hd_data, f"HD95 [{unit}]")):
        ax.boxplot([d if d else [np.nan] for d in data], showmeans=True)
        ax.set_xticks(range(1, len(names) + 1))
        ax.set_xticklabels(names, rotation=45, ha="right")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(-0.02, 1.02)
    fig.suptitle(f"svseg evaluation, protocol {summary['protocol']}, {summary['overall']['n_cases']} cases")

    def _save(tmp):
        fig.savefig(tmp, dpi=100, format="png")

    try:
        _atomic_write(path, _save)
    finally:
        plt.close(fig)


def _json_safe(x):
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else (None if math.isnan(x) else ("inf" if x > 0 else "-inf"))
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_report(
    rows: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
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
        spacing: the spacing used, recorded in the summary (a sequence, or ``{case: spacing}``);
            the ``transunet`` protocol records ``"voxel units"``.
        plot: also write the per-class box plot.
        extra: more entries for ``summary.json`` (e.g. small-object results).

    Returns:
        The summary dict (as written to ``summary.json``, with ``files`` added).
    """
    import pandas as pd

    if not rows:
        raise ValueError("rows is empty: nothing to report.")
    out = Path(output_dir)
    summary = summarize(rows, protocol)
    if protocol == "transunet":
        summary["spacing"] = "voxel units (the transunet protocol ignores spacing)"
    else:
        summary["spacing"] = _json_safe(spacing) if spacing is not None else "voxel units (no spacing given)"
    summary["units"] = {"hd95": "voxels" if protocol == "transunet" else "spacing units (mm for NIfTI)"}
    extra = dict(extra or {})
    extra_files = extra.pop("files", {})
    summary.update(extra)
    df = pd.DataFrame(list(rows))
    cols = list(METRIC_COLUMNS) + [c for c in df.columns if c not in METRIC_COLUMNS]
    df = df[cols]
    files = {"metrics": str(out / "metrics.csv"), "summary": str(out / "summary.json")}
    _atomic_write(out / "metrics.csv", lambda tmp: df.to_csv(tmp, index=False))
    if plot:
        _boxplot(rows, summary, out / "boxplot.png")
        files["boxplot"] = str(out / "boxplot.png")
    files.update(extra_files)
    summary["files"] = files

    def _dump(tmp):
        with open(tmp, "w") as f:
            json.dump(_json_safe(summary), f, indent=2)
            f.write("\n")

    _atomic_write(out / "summary.json", _dump)
    return summary


def _case_id(path: Path) -> str:
    name = path.name
    for suf in _NIFTI_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return path.stem


def _strip(case: str) -> str:
    for end in _STRIP_ENDINGS:
        if case.endswith(end) and len(case) > len(end):
            return case[: -len(end)]
    return case


def match_files(pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, allow_missing: bool = False) -> list[tuple[str, Path, Path]]:
    """Pair NIfTI files of two folders by name.

    A reference ``X.nii.gz`` matches a prediction ``X.nii.gz`` (or ``X.nii``); failing that, names are
    compared after removing one ending among ``_pred, _seg, _gt, _label, _mask, _0000``.

    Returns:
        ``[(case, pred_path, ref_path), ...]`` sorted by case.

    Raises:
        FileNotFoundError: a folder is missing or empty, or (unless ``allow_missing``) a reference has
            no prediction.
    """
    pdir, rdir = Path(pred_dir), Path(ref_dir)
    for d, what in ((pdir, "pred_dir"), (rdir, "ref_dir")):
        if not d.is_dir():
            raise FileNotFoundError(f"{what} {str(d)!r} is not a folder.")
    preds = {_case_id(p): p for p in sorted(pdir.iterdir()) if p.name.endswith(_NIFTI_SUFFIXES)}
    refs = {_case_id(p): p for p in sorted(rdir.iterdir()) if p.name.endswith(_NIFTI_SUFFIXES)}
    if not refs:
        raise FileNotFoundError(f"ref_dir {str(rdir)!r} holds no .nii/.nii.gz files.")
    if not preds:
        raise FileNotFoundError(f"pred_dir {str(pdir)!r} holds no .nii/.nii.gz files.")
    preds_stripped = {_strip(k): v for k, v in preds.items()}
    pairs, missing = [], []
    used = set()
    for case, rpath in refs.items():
        ppath = preds.get(case) or preds.get(_strip(case)) or preds_stripped.get(case) or preds_stripped.get(_strip(case))
        if ppath is None:
            missing.append(case)
            continue
        used.add(ppath)
        pairs.append((_strip(case), ppath, rpath))
    if missing and not allow_missing:
        raise FileNotFoundError(f"no prediction in {str(pdir)!r} for reference case(s): {', '.join(missing)}.")
    if missing:
        warnings.warn(f"skipping reference case(s) without prediction: {', '.join(missing)}", stacklevel=2)
    extra = sorted(p.name for p in preds.values() if p not in used)
    if extra:
        warnings.warn(f"predictions without reference are ignored: {', '.join(extra)}", stacklevel=2)
    return sorted(pairs)


def load_label_volume(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI label volume as a compact integer array.

    Returns:
        ``(labels, affine, spacing)``: labels in the on-disk orientation (no reorientation),
        the 4x4 affine and the voxel size of the spatial axes.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file {str(path)!r} does not exist.")
    img = nib.load(str(path))
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    labels = _to_label_array(data, str(path))
    spacing = tuple(float(z) for z in img.header.get_zooms()[: labels.ndim])
    return labels, np.asarray(img.affine), spacing


def evaluate_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    protocol: str = "standard",
    class_names: Sequence[str] | Mapping[int, str] | None = None,
    spacing: Sequence[float] | float | None = None,
    small_objects: bool = False,
    size_reference: str = "slice",
    slice_axis: int = 2,
    allow_missing: bool = False,
    plot: bool = True,
    progress: bool = True,
) -> dict:
    """Evaluate NIfTI predictions against NIfTI references matched by file name.

    Args:
        pred_dir: folder of predicted label volumes (``.nii``/``.nii.gz``).
        ref_dir: folder of reference label volumes.
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
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
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
    iterator = pairs
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(pairs, desc="evaluate", unit="case")
    rows: list[dict] = []
    so_rows: list[dict] = []
    spacings: dict[str, Any] = {}
    for case, ppath, rpath in iterator:
        ref, ref_affine, ref_spacing = load_label_volume(rpath)
        pred, pred_affine, _ = load_label_volume(ppath)
        if pred.shape != ref.shape:
            raise ValueError(f"case {case}: prediction {ppath.name} has shape {pred.shape}, reference {rpath.name} {ref.shape}.")
        if not np.allclose(pred_affine, ref_affine, atol=1e-3):
            warnings.warn(f"case {case}: prediction and reference affines differ; voxels are compared as stored.", stacklevel=2)
        sp = ref_spacing if spacing is None else spacing
        spacings[case] = list(np.broadcast_to(np.asarray(sp, dtype=float), (ref.ndim,)).tolist())
        rows.extend(evaluate_case(pred, ref, names, spacing=sp, protocol=protocol, case=case))
        if small_objects:
            from svseg.evaluation.small_objects import object_metrics

            so_rows.extend(
                object_metrics(pred, ref, names, case=case, size_reference=size_reference, axis=slice_axis)
            )
        del pred, ref
    extra: dict[str, Any] = {"cases": [c for c, _, _ in pairs]}
    out = Path(output_dir)
    if small_objects:
        from svseg.evaluation.small_objects import summarize_objects, write_object_table

        write_object_table(so_rows, out / "small_objects.csv")
        extra["small_objects"] = summarize_objects(so_rows)
        extra["small_objects"]["size_reference"] = size_reference
        extra["files"] = {"small_objects": str(out / "small_objects.csv")}
    return write_report(rows, out, protocol, spacing=spacings, plot=plot, extra=extra)
