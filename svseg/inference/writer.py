"""Writing predicted label maps: NIfTI with the input's affine and spacing, PNG for 2D image inputs.

* :func:`write_nifti`: one label map, written atomically (:func:`svseg.io.atomic_path`).
* :class:`PredictionSaver`: the ignite handler that a bundle's ``evaluate.json`` and
  ``inference.json`` attach to their MONAI ``SupervisedEvaluator``; it writes
  ``<output_dir>/<case><postfix>.nii.gz`` for every item of every iteration, or
  ``<output_dir>/<case><postfix>.png`` when the input was a 2D image file (PNG, JPEG, BMP, TIFF):
  :func:`write_label_png`, class ids as grey values (8-bit, 16-bit from 256 classes on); with
  ``probabilities=True`` also ``<output_dir>/<case>.npz``: :func:`write_probabilities`.
* :func:`write_probabilities`: the softmax probabilities of one case as a compressed ``.npz``
  (``probabilities``: ``(K, *spatial)`` in the array layout of the written label map, ``class_names``),
  nnU-Net's ``--save_probabilities`` file; :func:`read_probabilities` reads it back (the ensembles and
  ``svseg find-best``), :func:`probability_header` gives its shape and class names without decompressing it.

Why not MONAI's ``SaveImaged``: it writes with the (possibly reoriented) ``affine`` of the
prediction and a fresh header; svseg's writer restores the input's ``original_affine`` (undoing
an ``Orientationd``), keeps the input's qform/sform codes and units, and picks the smallest integer
dtype for the labels, so a prediction overlays its scan exactly in any viewer.
"""
from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from ignite.engine import Engine, Events

from svseg.evaluation.handler import evaluator_items
from svseg.errors import InputError
from svseg.io import atomic_path, atomic_save_npz, atomic_write

__all__ = ["write_nifti", "write_label_png", "write_probabilities", "read_probabilities", "probability_header",
           "reference_affine",
           "PredictionSaver", "PROBABILITY_DTYPES"]

#: on-disk dtypes of saved probabilities (float16 halves the files; ensembles average in float32)
PROBABILITY_DTYPES = ("float16", "float32")

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


def _to_reference_orientation(arr: np.ndarray, current: np.ndarray | None, target: np.ndarray) -> np.ndarray:
    """``arr`` (spatial axes first, any trailing axes kept) turned from the ``current`` orientation back
    into the ``target`` one (flips and axis permutations, e.g. undoing MONAI's ``Orientationd``)."""
    if current is None or np.allclose(current, target, atol=1e-4):
        return arr
    ornt_cur = nib.orientations.io_orientation(current)
    ornt_tgt = nib.orientations.io_orientation(target)
    return nib.orientations.apply_orientation(arr, nib.orientations.ornt_transform(ornt_cur, ornt_tgt))


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
    arr = _to_reference_orientation(arr, current, target)
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


def write_probabilities(probabilities: Any, path: str | os.PathLike, class_names: Sequence[str] | None = None,
                        reference: Any = None, dtype: str = "float16") -> Path:
    """Write one case's class probabilities as a compressed ``.npz``, atomically.

    The file holds ``probabilities``, ``(K, *spatial)`` (class axis first, as nnU-Net's
    ``--save_probabilities`` files), and ``class_names`` (``K`` strings) when given.

    Args:
        probabilities: ``(K, H, W[, D])`` scores (numpy or tensor), e.g. the softmax of the network.
        path: the ``.npz`` file.
        class_names: names by class index, background first (``K`` of them).
        reference: for a volume, what :func:`write_nifti` takes as its reference (a ``MetaTensor`` /
            meta dict whose ``affine`` differs from ``original_affine`` is turned back into the
            input's orientation, so the array lines up voxel for voxel with the written label map);
            ``None`` keeps the array as it is (a 2D image, or a volume already in the input's layout).
        dtype: ``float16`` (half the size; the ensembles average in float32) or ``float32``.

    Raises:
        ValueError: an unknown ``dtype``, fewer than two spatial axes, or a class-name count other than ``K``.
    """
    if str(dtype) not in PROBABILITY_DTYPES:
        raise ValueError(f"dtype must be one of {PROBABILITY_DTYPES}, got {dtype!r}.")
    arr = _to_numpy(probabilities).astype(np.float32, copy=False)
    if arr.ndim not in (3, 4):
        raise ValueError(f"probabilities must be (K, H, W) or (K, H, W, D), got shape {arr.shape}.")
    names = None if class_names is None else [str(n) for n in class_names]
    if names is not None and len(names) != arr.shape[0]:
        raise ValueError(f"{len(names)} class names for {arr.shape[0]} probability channels.")
    if reference is not None and arr.ndim == 4:
        target, current, _ = reference_affine(reference)
        arr = np.moveaxis(_to_reference_orientation(np.moveaxis(arr, 0, -1), current, target), -1, 0)
    arrays: dict[str, Any] = {"probabilities": np.ascontiguousarray(arr.astype(dtype))}
    if names is not None:
        arrays["class_names"] = np.asarray(names, dtype=str)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return atomic_save_npz(arrays, out)


def probability_header(path: str | os.PathLike) -> tuple[tuple[int, ...], list[str] | None]:
    """``(shape, class names or None)`` of a probability ``.npz`` without decompressing its array.

    Raises:
        FileNotFoundError: no such file.
        svseg.errors.InputError: not a ``.npz`` with a ``probabilities`` array.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probability file {str(path)!r} does not exist.")
    try:
        with zipfile.ZipFile(path) as z:
            if "probabilities.npy" not in z.namelist():
                raise InputError(path, "holds no 'probabilities' array (not a probability file of svseg predict "
                                       "--save-probabilities)")
            with z.open("probabilities.npy") as f:
                version = np.lib.format.read_magic(f)
                reader = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version in reader:
                    shape = reader[version](f)[0]
                else:  # a newer header version: read the array itself
                    shape = np.load(path, allow_pickle=False)["probabilities"].shape
        with np.load(path, allow_pickle=False) as npz:
            names = [str(n) for n in npz["class_names"]] if "class_names" in npz.files else None
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - an unreadable file is one clear line
        raise InputError(path, f"is not a readable probability file ({type(e).__name__}: {e})") from e
    return tuple(int(s) for s in shape), names


def read_probabilities(path: str | os.PathLike) -> tuple[np.ndarray, list[str] | None]:
    """``(probabilities (K, *spatial) as float32, class names or None)`` of a probability ``.npz``
    (:func:`svseg.inference.write_probabilities`; an nnU-Net file has no class names).

    Raises:
        FileNotFoundError: no such file.
        svseg.errors.InputError: not a readable ``.npz`` with a ``(K, H, W[, D])`` ``probabilities`` array.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probability file {str(path)!r} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "probabilities" not in npz.files:
                raise InputError(path, f"holds no 'probabilities' array (arrays: {', '.join(npz.files) or 'none'})")
            probs = np.asarray(npz["probabilities"], dtype=np.float32)
            names = [str(n) for n in npz["class_names"]] if "class_names" in npz.files else None
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - an unreadable file is one clear line
        raise InputError(path, f"is not a readable probability file ({type(e).__name__}: {e})") from e
    if probs.ndim not in (3, 4):
        raise InputError(path, f"probabilities must be (K, H, W) or (K, H, W, D), got shape {probs.shape}")
    return probs, names


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

    With ``probabilities=True`` it first writes ``<output_dir>/<case>.npz`` from the item's
    ``probability_key`` (the softmax, which the bundles' ``inference.json`` copies there with
    MONAI's ``Activationsd`` + ``CopyItemsd`` before the argmax) with :func:`write_probabilities`, in the
    same array layout as the label map; the label map is written second, so an existing label map
    always has its probabilities beside it.

    Config snippet (``inference.json``)::

        {"_target_": "svseg.inference.PredictionSaver", "output_dir": "@prediction_dir", "postfix": "_seg",
         "probabilities": "@save_probabilities", "class_names": "@class_names"}

    Args:
        output_dir: folder of the label maps (created).
        postfix: appended to the case id.
        enabled: ``False`` attaches nothing (a config switch such as ``save_predictions``).
        probabilities: also write ``<case>.npz``.
        class_names: the class names stored in each ``.npz`` (one per probability channel).
        probability_dtype: ``float16`` or ``float32`` on disk.
        probability_key: the item key holding the probabilities.
    """

    def __init__(self, output_dir: str | os.PathLike, postfix: str = "", enabled: bool = True,
                 probabilities: bool = False, class_names: Sequence[str] | None = None,
                 probability_dtype: str = "float16", probability_key: str = "prob") -> None:
        if str(probability_dtype) not in PROBABILITY_DTYPES:
            raise ValueError(f"probability_dtype must be one of {PROBABILITY_DTYPES}, got {probability_dtype!r}.")
        self.output_dir = Path(output_dir)
        self.postfix = str(postfix)
        self.enabled = bool(enabled)
        self.probabilities = bool(probabilities)
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.probability_dtype = str(probability_dtype)
        self.probability_key = str(probability_key)
        self.written: list[Path] = []
        self.written_probabilities: list[Path] = []

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def _save_probabilities(self, case: str, item: Mapping, two_d: bool) -> None:
        probs = item.get(self.probability_key)
        if probs is None:
            raise ValueError(f"PredictionSaver(probabilities=True): the evaluator output has no {self.probability_key!r} "
                             "(the postprocessing must copy the softmax there before the argmax: CopyItemsd)")
        image = item.get("image")
        reference = None if two_d or not getattr(image, "meta", None) else image
        path = write_probabilities(probs, self.output_dir / f"{case}.npz", self.class_names, reference=reference,
                                   dtype=self.probability_dtype)
        self.written_probabilities.append(path)

    def __call__(self, engine: Engine) -> None:
        for case, item in evaluator_items(engine, len(self.written)):
            two_d = _is_image_2d(item)
            if self.probabilities:
                self._save_probabilities(case, item, two_d)
            if two_d:
                path = write_label_png(item["pred"], self.output_dir / f"{case}{self.postfix}.png")
                self.written.append(path)
                logger.info("predicted %s -> %s", case, path)
                continue
            image = item.get("image")
            reference = image if getattr(image, "meta", None) else item["pred"]
            path = write_nifti(item["pred"], reference, self.output_dir / f"{case}{self.postfix}.nii.gz")
            self.written.append(path)
            logger.info("predicted %s -> %s", case, path)
