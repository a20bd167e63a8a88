"""Small-object metrics on label volumes: per connected component and per object-size bin.

The small-object papers (SvANet, AFMA, ...) evaluate 2D images and report scores on the subsets of
images whose object occupies less than 0.5, 1, 2, 3, 5, 10 or 100 % of the image (SvANet's
``tinyObjectsValidation``). To check such claims on volumes, svseg evaluates every connected
component of the reference:

* an object's size is a share (%) of the slice it lies in (``size_reference="slice"``: 2D components
  of every slice along ``axis``, SvANet's image-level definition applied slice by slice) or of the
  whole volume (``size_reference="volume"``: 3D components);
* a reference object is *detected* when at least ``min_overlap`` of its voxels are predicted with
  its class (default: one voxel);
* its *object Dice* is ``2|R ∩ P| / (|R| + |P_m|)`` where ``P_m`` is the union of the predicted
  components of the same class that touch it (the lesion-wise Dice of BraTS 2023);
* predicted components that touch no reference object are false positives, binned by their own size.

Rows go to ``small_objects.csv``; :func:`summarize_objects` gives, per class and overall, for every
size bin and for every cumulative subset "< t %": the number of objects, detection recall, mean
object Dice and the number of false-positive components.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from svseg.data.specs import SVANET_BINS, size_bin, size_bin_labels
from svseg.evaluation.labels import ClassNames, label_boxes, label_pair, union_box
from svseg.io import PathLike, atomic_save_csv

__all__ = ["SVANET_BINS", "size_bin_labels", "object_metrics", "summarize_objects", "write_object_table"]

def _match(ref_lab: np.ndarray, n_ref: int, pred_lab: np.ndarray, n_pred: int, min_overlap: float):
    """Per reference component: size, overlap with the class prediction, matched predicted size,
    detection flag; per predicted component: size and whether it touches a reference component."""
    ref_sizes = np.bincount(ref_lab.ravel(), minlength=n_ref + 1)
    pred_sizes = np.bincount(pred_lab.ravel(), minlength=n_pred + 1)
    both = (ref_lab > 0) & (pred_lab > 0)
    r_ids, p_ids = ref_lab[both].astype(np.int64), pred_lab[both].astype(np.int64)
    overlap = np.bincount(r_ids, minlength=n_ref + 1)
    pairs = np.unique(r_ids * (n_pred + 1) + p_ids)
    pr, pp = pairs // (n_pred + 1), pairs % (n_pred + 1)
    matched_pred_size = np.bincount(pr, weights=pred_sizes[pp], minlength=n_ref + 1)
    touched = np.zeros(n_pred + 1, dtype=bool)
    touched[pp] = True
    results = []
    for i in range(1, n_ref + 1):
        size = int(ref_sizes[i])
        ov = int(overlap[i])
        detected = ov > 0 and ov >= min_overlap * size
        dice = 2.0 * ov / (size + float(matched_pred_size[i]))
        results.append((size, detected, dice))
    fps = [int(pred_sizes[j]) for j in range(1, n_pred + 1) if not touched[j]]
    return results, fps


def object_metrics(
    pred: Any,
    ref: Any,
    class_names: ClassNames = None,
    case: str | None = None,
    size_reference: str = "slice",
    axis: int = 2,
    bins: Sequence[float] = SVANET_BINS,
    connectivity: int | None = None,
    min_overlap: float = 0.0,
) -> list[dict]:
    """Per-object rows of one case.

    Args:
        pred: predicted label map (2D or 3D; a leading channel of 1 is dropped).
        ref: reference label map of the same shape.
        class_names: names indexed by label id, background first (``None``: ``class_<id>``).
        case: case id for the ``case`` column.
        size_reference: ``"slice"`` (2D components per slice along ``axis``, size in % of the slice)
            or ``"volume"`` (components of the whole array, size in % of all voxels).
        axis: slice axis (``size_reference="slice"`` on 3D input).
        bins: increasing upper edges of the size bins in percent (SvANet's by default).
        connectivity: neighbourhood of the components (1 = faces ... ndim = full; default full).
        min_overlap: fraction of a reference object that must be predicted for it to count as
            detected (0 means one voxel).

    Returns:
        rows ``{case, class, kind ("object" | "false_positive"), slice, size_voxels, size_pct,
        size_bin, detected, dice}``; false-positive rows have ``detected``/``dice`` empty (NaN).
    """
    if size_reference not in ("slice", "volume"):
        raise ValueError(f"size_reference must be 'slice' or 'volume', got {size_reference!r}.")
    if list(bins) != sorted(bins) or len(bins) == 0 or bins[0] <= 0:
        raise ValueError(f"bins must be increasing positive percentages, got {list(bins)}.")
    p, r, names = label_pair(pred, ref, class_names)
    labels = size_bin_labels(bins)
    if size_reference == "slice" and p.ndim == 3:
        if not -3 <= axis < 3:
            raise ValueError(f"axis must be 0, 1 or 2 for a 3D volume, got {axis}.")
        axis = axis % 3
        p, r = np.moveaxis(p, axis, 0), np.moveaxis(r, axis, 0)
        stack = True
    else:
        stack = False
    unit_size = int(np.prod(p.shape[1:])) if stack else int(p.size)
    ndim_obj = p.ndim - 1 if stack else p.ndim
    structure = ndimage.generate_binary_structure(ndim_obj, ndim_obj if connectivity is None else connectivity)
    case_id = "case" if case is None else str(case)
    rows: list[dict] = []

    def _emit(label: int, slice_index: int, pm: np.ndarray, rm: np.ndarray) -> None:
        rl, n_ref = ndimage.label(rm, structure=structure)
        pl, n_pred = ndimage.label(pm, structure=structure)
        results, fps = _match(rl, n_ref, pl, n_pred, min_overlap)
        found = [("object", size, bool(detected), float(dice)) for size, detected, dice in results]
        found += [("false_positive", size, float("nan"), float("nan")) for size in fps]
        for kind, size, detected, dice in found:
            pct = 100.0 * size / unit_size
            rows.append(
                {
                    "case": case_id, "class": names[label], "kind": kind, "slice": slice_index,
                    "size_voxels": size, "size_pct": pct, "size_bin": labels[size_bin(pct, bins)],
                    "detected": detected, "dice": dice,
                }
            )

    for label, boxes in enumerate(label_boxes(p, r, len(names) - 1), start=1):
        box = union_box(boxes, p.shape)
        if box is None:
            continue
        if not stack:
            _emit(label, -1, p[box] == label, r[box] == label)
            continue
        # per slice, only inside the box: components never leave it
        for k in range(box[0].start, box[0].stop):
            pm = p[(k,) + box[1:]] == label
            rm = r[(k,) + box[1:]] == label
            if pm.any() or rm.any():
                _emit(label, k, pm, rm)
    return rows


def _stats(objs: list[dict], fps: list[dict]) -> dict:
    n = len(objs)
    return {
        "n_objects": n,
        "recall": (sum(1 for o in objs if o["detected"]) / n) if n else None,
        "dice": float(np.mean([o["dice"] for o in objs])) if n else None,
        "n_false_positive": len(fps),
    }


def summarize_objects(rows: Sequence[Mapping[str, Any]], bins: Sequence[float] = SVANET_BINS) -> dict:
    """Detection recall, mean object Dice and false-positive counts per size bin.

    Returns ``{"bins": {label: stats}, "below": {"<t%": stats}, "classes": {name: {"bins": ..., "below":
    ...}}}``; ``below`` are SvANet's cumulative subsets (objects smaller than t %).
    """
    labels = size_bin_labels(bins)

    def _block(rs):
        objs = [r for r in rs if r["kind"] == "object"]
        fps = [r for r in rs if r["kind"] == "false_positive"]
        out = {"all": _stats(objs, fps), "bins": {}, "below": {}}
        for lab in labels:
            out["bins"][lab] = _stats([o for o in objs if o["size_bin"] == lab], [f for f in fps if f["size_bin"] == lab])
        for b in bins:
            out["below"][f"<{b:g}%"] = _stats(
                [o for o in objs if o["size_pct"] < b or (b == bins[-1] and o["size_pct"] <= b)],
                [f for f in fps if f["size_pct"] < b or (b == bins[-1] and f["size_pct"] <= b)],
            )
        return out

    summary = _block(list(rows))
    names = []
    for r in rows:
        if r["class"] not in names:
            names.append(r["class"])
    summary["classes"] = {n: _block([r for r in rows if r["class"] == n]) for n in names}
    return summary


def write_object_table(rows: Sequence[Mapping[str, Any]], path: PathLike) -> Path:
    """Write the per-object rows as CSV, atomically (an empty table keeps its header); returns the path."""
    cols = ["case", "class", "kind", "slice", "size_voxels", "size_pct", "size_bin", "detected", "dice"]
    return atomic_save_csv(pd.DataFrame(list(rows), columns=cols), path)
