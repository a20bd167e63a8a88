"""Per-case statistics of a predicted label map: size and connected components per class.

``svseg predict`` writes ``<output>/<case>_statistics.json`` beside each label map (as
TotalSegmentator writes ``statistics.json``): for every class but the background, the number of
voxels (pixels), the size in physical units and the number of connected components.

* **Size**: voxel count x voxel volume, in mm^3 for a volume (``volume_mm3``) and mm^2 for a 2D image
  (``area_mm2``). The spacing comes from the label map, which carries the input's geometry: the
  NIfTI header's voxel size (converted to mm from the header's unit; a header that states no unit
  is taken as mm, as NIfTI readers do, and the file says so). A 2D label map written as PNG has no
  pixel spacing (neither had its input image): its sizes are in pixels (``area_px``, spacing 1), and
  the file says so.
* **Components**: :func:`scipy.ndimage.label` with full connectivity (26 neighbours in 3D, 8 in 2D),
  the connectivity of :func:`svseg.inference.keep_largest_component` and of MONAI's
  ``KeepLargestConnectedComponent``; a class absent from the map has 0 components and size 0.

MONAI has no per-class size or component count of a label map (its ``LabelStatsd`` reports
intensity statistics); scipy gives both in a few lines, kept here with the file format.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from svseg.io import IMAGE_2D_SUFFIXES, NIFTI_SUFFIXES, atomic_save_json, case_name, read_image_2d

__all__ = ["label_statistics", "read_label_map", "statistics_path", "write_statistics", "STATISTICS_SUFFIX"]

#: name ending of a case's statistics file: ``<case>_statistics.json``
STATISTICS_SUFFIX = "_statistics.json"

_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


def label_statistics(labels: Any, spacing: Sequence[float] | None = None,
                     class_names: Sequence[str] | None = None) -> dict:
    """Size and connected-component count of every non-background class of ``labels``.

    Args:
        labels: integer label map, 2D ``(H, W)`` or 3D ``(H, W, D)`` (leading singleton axes are dropped).
        spacing: voxel size in mm per axis; ``None``: unknown, sizes are in voxels (pixels).
        class_names: names by label id, background first; a label beyond them is named ``label_<id>``.

    Returns:
        ``{"spatial_dims", "voxel_size", "classes": {name: {"label", "voxels", <size key>, "components"}}}``
        where the size key is ``volume_mm3`` / ``area_mm2``, or ``volume_voxels`` / ``area_px`` without spacing.
    """
    arr = np.asarray(labels)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"labels must be a 2D or 3D label map, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.uint64:
        if np.any(np.rint(arr) != arr):
            raise ValueError("labels must hold integer label ids.")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"labels must be non-negative class ids, got {int(arr.min())}.")
    if spacing is not None and len(spacing) != arr.ndim:
        raise ValueError(f"spacing has {len(spacing)} values for a {arr.ndim}D label map.")
    names = [str(n) for n in (class_names or [])]
    top = int(arr.max(initial=0))
    n_labels = max(len(names), top + 1)
    counts = np.bincount(arr.ravel(), minlength=n_labels)
    boxes = ndimage.find_objects(arr, max_label=n_labels - 1) if n_labels > 1 else []
    structure = ndimage.generate_binary_structure(arr.ndim, arr.ndim)
    unit = float(np.prod(spacing)) if spacing is not None else 1.0
    key = ("volume" if arr.ndim == 3 else "area") + (
        ("_mm3" if arr.ndim == 3 else "_mm2") if spacing is not None else ("_voxels" if arr.ndim == 3 else "_px"))
    classes: dict[str, dict] = {}
    for label in range(1, n_labels):
        name = names[label] if label < len(names) else f"label_{label}"
        box = boxes[label - 1]
        components = 0 if box is None else int(ndimage.label(arr[box] == label, structure=structure)[1])
        voxels = int(counts[label])
        classes[name] = {"label": label, "voxels": voxels, key: voxels * unit, "components": components}
    return {"spatial_dims": arr.ndim, "voxel_size": unit, "classes": classes}


def read_label_map(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...] | None, str]:
    """A written label map as ``(labels, spacing in mm or None, where the spacing came from)``.

    NIfTI: the array in file order and the header's voxel size, converted to mm. PNG (and the other
    2D endings): the class ids (:func:`svseg.io.read_image_2d`) and no spacing.
    """
    path = Path(path)
    lower = path.name.lower()
    if lower.endswith(NIFTI_SUFFIXES):
        img = nib.load(str(path))
        arr = np.asanyarray(img.dataobj)
        while arr.ndim > 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        unit = img.header.get_xyzt_units()[0]
        zooms = [float(z) for z in img.header.get_zooms()[: arr.ndim]]
        if unit in _TO_MM:
            return arr, tuple(z * _TO_MM[unit] for z in zooms), f"the NIfTI header ({unit})"
        return arr, tuple(zooms), f"the NIfTI header (it states no unit ({unit}); taken as mm)"
    if lower.endswith(IMAGE_2D_SUFFIXES):
        return (read_image_2d(path, mask=True)[0], None,
                "none: a 2D image file has no pixel spacing, so sizes are in pixels (spacing 1)")
    raise ValueError(f"{path.name}: not a label map svseg writes (NIfTI or a 2D image file).")


def statistics_path(prediction: str | os.PathLike, postfix: str = "_seg") -> Path:
    """``<folder>/<case>_statistics.json`` for the label map ``<folder>/<case><postfix>.nii.gz`` (or ``.png``)."""
    path = Path(prediction)
    case = case_name(path)
    if postfix and case.endswith(postfix) and len(case) > len(postfix):
        case = case[: -len(postfix)]
    return path.with_name(case + STATISTICS_SUFFIX)


def write_statistics(prediction: str | os.PathLike, out_path: str | os.PathLike | None = None,
                     class_names: Sequence[str] | None = None) -> Path:
    """Write the statistics of the label map ``prediction`` as JSON, atomically (:func:`svseg.io.atomic_save_json`).

    Args:
        prediction: a written label map (NIfTI, or PNG for a 2D image).
        out_path: the JSON file; default :func:`statistics_path` of ``prediction``.
        class_names: the model's class names by label id, background first.

    Returns:
        The written path. The file holds ``case``, ``prediction`` (the label map's file name),
        ``spacing`` and ``spacing_source``, ``unit`` and the per-class entries of :func:`label_statistics`.
    """
    prediction = Path(prediction)
    labels, spacing, source = read_label_map(prediction)
    stats = label_statistics(labels, spacing, class_names)
    dims = stats["spatial_dims"]
    unit = ("mm3" if dims == 3 else "mm2") if spacing is not None else ("voxels" if dims == 3 else "px")
    target = Path(out_path) if out_path is not None else statistics_path(prediction)
    doc = {
        "case": target.name[: -len(STATISTICS_SUFFIX)] if target.name.endswith(STATISTICS_SUFFIX) else case_name(prediction),
        "prediction": prediction.name,
        "spatial_dims": dims,
        "spacing": list(spacing) if spacing is not None else [1.0] * dims,
        "spacing_source": source,
        "unit": unit,
        ("voxel_volume_mm3" if dims == 3 else "pixel_area_mm2") if spacing is not None else
        ("voxel_volume" if dims == 3 else "pixel_area"): stats["voxel_size"],
        "components": "connected components per class, full connectivity (26 neighbours in 3D, 8 in 2D)",
        "classes": stats["classes"],
    }
    return atomic_save_json(doc, target)
