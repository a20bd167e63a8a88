"""Writing predicted label maps: NIfTI with the input's affine and spacing, PNG for 2D image inputs.

* :func:`write_nifti`: one label map, written atomically (:func:`svseg.io.atomic_path`).
* :class:`PredictionSaver`: the ignite handler that a bundle's ``evaluate.json`` and
  ``inference.json`` attach to their MONAI ``SupervisedEvaluator``; it writes
  ``<output_dir>/<case><postfix>.nii.gz`` for every item of every iteration, or
  ``<output_dir>/<case><postfix>.png`` when the input was a 2D image file (PNG, JPEG, BMP, TIFF):
  :func:`write_label_png`, class ids as grey values (8-bit, 16-bit from 256 classes on).

Why not MONAI's ``SaveImaged``: it writes with the (possibly reoriented) ``affine`` of the
prediction and a fresh header; svseg's writer restores the input's ``original_affine`` (undoing
an ``Orientationd``), keeps the input's qform/sform codes and units, and picks the smallest integer
dtype for the labels, so a prediction overlays its scan exactly in any viewer.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from ignite.engine import Engine, Events

from svseg.evaluation.handler import evaluator_items
from svseg.io import atomic_path, atomic_write

__all__ = ["write_nifti", "write_label_png", "reference_affine", "PredictionSaver"]

logger = logging.getLogger(__name__)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def reference_affine(reference: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """Return ``(target_affine, current_affine, header)`` from a reference.

    ``reference`` may be a NIfTI path, a nibabel image, a MONAI ``MetaTensor`` or meta dict
    (``original_affine`` is the target, ``affine`` the current orientation of the array), or a 4x4
    affine. ``current_affine`` is ``None`` when the array is in the reference's own orientation.
    """
    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference)
        if not path.is_file():
            raise FileNotFoundError(f"reference image {str(path)!r} does not exist.")
        img = nib.load(str(path))
        return np.asarray(img.affine, dtype=np.float64), None, img.header
    if isinstance(reference, nib.spatialimages.SpatialImage):
        return np.asarray(reference.affine, dtype=np.float64), None, reference.header
    meta = getattr(reference, "meta", None)
    if meta is None and isinstance(reference, Mapping):
        meta = reference
    if meta is not None:
        aff = meta.get("affine")
        orig = meta.get("original_affine", aff)
        if orig is None:
            raise ValueError("reference meta has neither 'original_affine' nor 'affine'.")
        orig = _to_numpy(orig).astype(np.float64)
        aff = None if aff is None else _to_numpy(aff).astype(np.float64)
        if orig.ndim == 3:  # batched meta: first item
            orig = orig[0]
        if aff is not None and aff.ndim == 3:
            aff = aff[0]
        return orig, aff, None
    arr = _to_numpy(reference).astype(np.float64)
    if arr.shape != (4, 4):
        raise ValueError(f"reference must be a NIfTI path, image, MetaTensor/meta dict or a 4x4 affine; got shape {arr.shape}.")
    return arr, None, None


def write_nifti(label_volume: Any, reference: Any, out_path: str | os.PathLike, dtype: Any = None) -> Path:
    """Write a label volume as NIfTI with the reference's original affine (hence spacing).

    Args:
        label_volume: integer label map (H, W, D) (numpy or tensor; a leading singleton channel is
            dropped).
        reference: the input image's NIfTI path or nibabel image (affine and header are copied), a MONAI
            ``MetaTensor``/meta dict (if ``affine`` differs from ``original_affine`` by axis flips or
            permutations - e.g. after ``Orientationd`` - the array is reoriented back; resampled arrays
            must be resampled back first, e.g. with MONAI ``SaveImage(resample=True)``), or a 4x4 affine.
        out_path: output file (``.nii.gz`` or ``.nii``); written atomically.
        dtype: on-disk integer dtype (default ``uint8`` when labels < 256, else ``int16``/``int32``).

    Returns:
        The written path.
    """
    arr = _to_numpy(label_volume)
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"label_volume must be 2D or 3D (after dropping singleton channels), got {arr.shape}.")
    target, current, header = reference_affine(reference)
    if current is not None and not np.allclose(current, target, atol=1e-4):
        ornt_cur = nib.orientations.io_orientation(current)
        ornt_tgt = nib.orientations.io_orientation(target)
        arr = nib.orientations.apply_orientation(arr, nib.orientations.ornt_transform(ornt_cur, ornt_tgt))
    if header is not None:
        ref_shape = tuple(int(s) for s in header.get_data_shape()[: arr.ndim])
        if ref_shape != tuple(arr.shape):
            raise ValueError(f"label_volume shape {tuple(arr.shape)} differs from the reference image shape {ref_shape}.")
    if dtype is None:
        top = int(arr.max(initial=0))
        dtype = np.uint8 if top < 256 and arr.min(initial=0) >= 0 else (np.int16 if top < 32768 else np.int32)
    data = np.asarray(arr).astype(dtype)
    img = nib.Nifti1Image(data, target)
    if header is not None and isinstance(header, nib.Nifti1Header):
        img.header.set_xyzt_units(*header.get_xyzt_units())
        qform, qcode = header.get_qform(coded=True)
        sform, scode = header.get_sform(coded=True)
        if qform is not None:
            img.set_qform(qform, int(qcode))
        if sform is not None:
            img.set_sform(sform, int(scode))
    img.header.set_data_dtype(dtype)
    img.header["scl_slope"] = 1
    img.header["scl_inter"] = 0
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if out.name.endswith(".nii.gz") else ".nii"
    with atomic_path(out, suffix=suffix) as tmp:
        nib.save(img, str(tmp))
    return out


def write_label_png(labels: Any, out_path: str | os.PathLike) -> Path:
    """Write a 2D label map ``(H, W)`` (a leading singleton channel is dropped) as a grey PNG of class ids,
    atomically: 8-bit for ids below 256, else 16-bit. The ids are the values (0, 1, 2, ...), not a
    display scale, so the file reads back as the same label map."""
    from PIL import Image

    arr = _to_numpy(labels)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"a PNG label map must be 2D (H, W), got shape {arr.shape}.")
    if arr.min(initial=0) < 0 or arr.max(initial=0) >= 65536:
        raise ValueError(f"label ids must lie in 0..65535 for a PNG, got {arr.min()}..{arr.max()}.")
    data = arr.astype(np.uint8 if arr.max(initial=0) < 256 else np.uint16)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out, "wb") as f:
        Image.fromarray(data).save(f, format="PNG")
    return out


def _is_image_2d(item: Mapping) -> bool:
    meta = getattr(item.get("image"), "meta", None) or {}
    return bool(meta.get("image_2d", False))


class PredictionSaver:
    """Write every predicted label map of a MONAI evaluator run as NIfTI, or PNG for 2D images (ignite handler).

    Attach it to a ``SupervisedEvaluator`` whose postprocessing ends in
    ``AsDiscreted(keys="pred", argmax=True)``: at each ``ITERATION_COMPLETED`` it writes
    ``engine.state.output[i]["pred"]`` of every item to ``<output_dir>/<case><postfix>.nii.gz``
    with :func:`write_nifti`, the reference geometry taken from the item's ``image`` meta data
    (``original_affine`` is the scan's own). Case ids as :func:`svseg.evaluation.evaluator_items`
    gives them (the item's ``case`` key, else the image file name).

    Config snippet (``inference.json``)::

        {"_target_": "svseg.inference.PredictionSaver", "output_dir": "@prediction_dir", "postfix": "_seg"}

    Args:
        output_dir: folder of the label maps (created).
        postfix: appended to the case id.
        enabled: ``False`` attaches nothing (a config switch such as ``save_predictions``).
    """

    def __init__(self, output_dir: str | os.PathLike, postfix: str = "", enabled: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.postfix = str(postfix)
        self.enabled = bool(enabled)
        self.written: list[Path] = []

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        for case, item in evaluator_items(engine, len(self.written)):
            if _is_image_2d(item):
                path = write_label_png(item["pred"], self.output_dir / f"{case}{self.postfix}.png")
                self.written.append(path)
                logger.info("predicted %s -> %s", case, path)
                continue
            image = item.get("image")
            reference = image if getattr(image, "meta", None) else item["pred"]
            path = write_nifti(item["pred"], reference, self.output_dir / f"{case}{self.postfix}.nii.gz")
            self.written.append(path)
            logger.info("predicted %s -> %s", case, path)
