"""Atomic writers (and the NIfTI reader) of every file format svseg produces.

See :mod:`svseg.io` for the guarantees and the JSON policy.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from svseg.io.atomic import PathLike, atomic_path, atomic_write

__all__ = [
    "to_json_safe",
    "atomic_save_text",
    "atomic_save_json",
    "atomic_save_csv",
    "atomic_save_figure",
    "atomic_save_png",
    "atomic_save_nifti",
    "atomic_save_npz",
    "atomic_save_h5",
    "atomic_torch_save",
    "load_nifti",
    "NIFTI_SUFFIXES",
]

#: file endings of NIfTI images (longest first)
NIFTI_SUFFIXES = (".nii.gz", ".nii")


def _json_number(x: float) -> float | str | None:
    if math.isfinite(x):
        return x
    if math.isnan(x):
        return None
    return "inf" if x > 0 else "-inf"


def _json_key(key: Any) -> Any:
    if isinstance(key, np.generic):
        key = key.item()
    if key is None or isinstance(key, (str, int, float, bool)):
        return key
    return str(key)


def to_json_safe(obj: Any) -> Any:
    """``obj`` with plain JSON values only, following svseg's JSON policy (see :mod:`svseg.io`).

    NaN becomes ``None`` (``null``); +inf / -inf become the strings ``"inf"`` / ``"-inf"``; numpy
    scalars and arrays, tensors, tuples and sets become Python numbers and lists; paths become
    strings; mapping keys that JSON cannot hold become strings. Anything else is returned as it
    is (``json.dumps`` then decides).
    """
    if isinstance(obj, Mapping):
        return {_json_key(k): to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _json_number(float(obj))
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch.Tensor, without importing torch
        return to_json_safe(obj.detach().cpu().tolist())
    return obj


def atomic_save_text(text: str, path: PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the destination path."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_save_json(obj: Any, path: PathLike, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (see the policy in :mod:`svseg.io`) atomically.

    Args:
        obj: anything :func:`to_json_safe` turns into JSON values.
        path: destination file.
        indent: JSON indentation.

    Returns:
        The destination path.
    """
    return atomic_save_text(json.dumps(to_json_safe(obj), indent=indent, allow_nan=False) + "\n", path)


def atomic_save_csv(rows: Sequence[Mapping[str, Any]] | Any, path: PathLike, fieldnames: Sequence[str] | None = None) -> Path:
    """Write rows (a list of dicts, or a pandas ``DataFrame``) as CSV atomically.

    Args:
        rows: list of mappings, or a ``pandas.DataFrame`` (written without its index; NaN as an
            empty cell, as pandas does).
        path: destination file.
        fieldnames: column order; default the keys of the first row in insertion order, with
            keys first seen in later rows appended.

    Returns:
        The destination path.
    """
    if hasattr(rows, "to_csv"):  # pandas DataFrame
        with atomic_write(path, "w", newline="") as f:
            rows.to_csv(f, index=False)
        return Path(path)
    rows = list(rows)
    if fieldnames is None:
        fieldnames = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames), extrasaction="raise")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def atomic_save_figure(fig: Any, path: PathLike, **savefig_kwargs: Any) -> Path:
    """Save a matplotlib figure atomically (format from the destination's extension).

    Args:
        fig: a :class:`matplotlib.figure.Figure`.
        path: destination file, e.g. ``progress.png``.
        savefig_kwargs: passed to :meth:`Figure.savefig` (``dpi``, ``bbox_inches`` ...).

    Returns:
        The destination path.
    """
    path = Path(path)
    fmt = savefig_kwargs.pop("format", None) or (path.suffix[1:].lower() if path.suffix else "png")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=fmt, **savefig_kwargs)
    return path


def atomic_save_png(array: Any, path: PathLike) -> Path:
    """Save a 2D (grey) or ``(H, W, 1|3|4)`` array as a PNG atomically.

    Args:
        array: image array; uint8 as is, floats in [0, 1] scaled to 0..255, other integers clipped.
        path: destination ``.png`` file.

    Returns:
        The destination path.
    """
    from PIL import Image

    arr = np.asarray(array)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"array must be (H, W) or (H, W, 1|3|4), got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating):
            arr = np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    with atomic_write(path, "wb") as f:
        Image.fromarray(arr).save(f, format="PNG")
    return Path(path)


def _as_numpy(data: Any) -> np.ndarray:
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    return np.asarray(data)


def atomic_save_nifti(data: Any, affine: Any, path: PathLike, header: Any = None, dtype: Any = None) -> Path:
    """Write a NIfTI image (``.nii`` or ``.nii.gz``) atomically with nibabel.

    The affine is stored exactly as the qform and the sform; their codes are the ones of
    ``header`` when it has them, else 1 (scanner). Spatial units are mm unless ``header`` says
    otherwise.

    Args:
        data: array (a tensor is moved to numpy), spatial axes first as nibabel expects.
        affine: 4x4 voxel-to-world matrix (kept exactly, so outputs keep the input geometry).
        path: destination ``.nii`` / ``.nii.gz`` file.
        header: optional nibabel header to copy (e.g. the input image's).
        dtype: on-disk dtype (e.g. ``np.uint8`` for label maps); default the array's.

    Returns:
        The destination path.
    """
    import nibabel as nib

    path = Path(path)
    suffix = next((s for s in NIFTI_SUFFIXES if path.name.endswith(s)), None)
    if suffix is None:
        raise ValueError(f"path must end with .nii or .nii.gz, got {path.name!r}.")
    arr = _as_numpy(data)
    if dtype is not None:
        arr = arr.astype(dtype)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {affine.shape}.")
    img = nib.Nifti1Image(arr, affine, header=header)
    img.set_data_dtype(arr.dtype)
    codes = (1, 1)
    if isinstance(header, nib.Nifti1Header):
        codes = (int(header["qform_code"]) or 1, int(header["sform_code"]) or 1)
    else:
        img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=codes[0])
    img.set_sform(affine, code=codes[1])
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, str(tmp))
    return path


def load_nifti(path: PathLike, dtype: Any = None) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI image as ``(array, affine, spacing)``.

    The array is in the on-disk orientation (no reorientation), scaled by the header's slope and
    intercept as nibabel does; trailing singleton axes beyond the third (``(X, Y, Z, 1)``) are
    dropped. ``spacing`` holds the voxel size of the remaining axes (at most three).

    Args:
        path: a ``.nii`` / ``.nii.gz`` file.
        dtype: cast the array to this dtype.

    Raises:
        FileNotFoundError: the file does not exist.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NIfTI file not found.")
    img = nib.load(str(path))
    arr = np.asanyarray(img.dataobj)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if dtype is not None:
        arr = arr.astype(dtype)
    spacing = tuple(float(z) for z in img.header.get_zooms()[: min(arr.ndim, 3)])
    return arr, np.asarray(img.affine, dtype=np.float64), spacing


def atomic_save_npz(arrays: Mapping[str, Any], path: PathLike, compress: bool = True) -> Path:
    """Save named arrays to a ``.npz`` file atomically (``np.savez_compressed`` by default)."""
    with atomic_write(path, "wb") as f:
        (np.savez_compressed if compress else np.savez)(f, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def atomic_save_h5(
    datasets: Mapping[str, Any], path: PathLike, attrs: Mapping[str, Any] | None = None, compression: str | None = "gzip"
) -> Path:
    """Save named arrays (and file attributes) to an HDF5 file atomically."""
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in datasets.items():
                f.create_dataset(key, data=np.asarray(value), compression=compression)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
    return Path(path)


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)`` through a temporary file and an atomic rename.

    Args:
        obj: anything :func:`torch.save` accepts (typically a dict of state dicts).
        path: destination ``.pt`` file.

    Returns:
        The destination path.
    """
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)
