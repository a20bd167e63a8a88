"""Atomic file writes for every svseg output.

A long run can be killed at any moment (preemption, out-of-memory killer, power loss). Every
file svseg writes (checkpoints, metric tables, plots, predictions) therefore goes to a
temporary file in the destination folder first, is flushed and ``fsync``-ed, and only then
renamed over the destination with :func:`os.replace`. On POSIX and Windows that rename is
atomic within one file system, so a reader sees either the complete old file or the complete
new file, never a truncated one. The temporary file lives in the same folder as the destination
(a rename across file systems would not be atomic) and is removed if the writer raises.

Example::

    from svseg.io import atomic_write, atomic_torch_save, atomic_save_json

    with atomic_write("out/metrics.csv", "w") as f:
        f.write("case,dice\\n")
    atomic_torch_save({"network": net.state_dict()}, "out/checkpoint_latest.pt")
    atomic_save_json({"mean_dice": 0.8}, "out/summary.json")
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_write",
    "atomic_path",
    "atomic_torch_save",
    "atomic_save_json",
    "atomic_save_csv",
    "atomic_save_figure",
    "atomic_save_png",
    "atomic_save_nifti",
]

PathLike = str | os.PathLike


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()  # what open() would give a new file (mkstemp gives 0600)


def _fsync_dir(directory: Path) -> None:
    """Flush a directory entry (the rename) to disk where the platform allows it."""
    if os.name != "posix":
        return
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prepare(path: PathLike) -> Path:
    path = Path(path)
    if str(path) == "" or path.name == "":
        raise ValueError(f"path must name a file, got {str(path)!r}.")
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is an existing directory, expected a file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(path: PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    Use this for writers that insist on opening the file themselves (nibabel, matplotlib, PIL).
    The temporary name keeps the destination's suffix (``suffix`` overrides it) so that
    writers which pick the format from the extension (``.nii.gz``, ``.png``) still work.

    Args:
        path: destination file.
        suffix: suffix of the temporary file, default the destination's full suffix.

    Raises:
        ValueError: if ``path`` is empty or an existing directory.
    """
    path = _prepare(path)
    if suffix is None:
        suffix = "".join(path.suffixes) if path.suffixes else ""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=str(path.parent))
    os.close(fd)
    with contextlib.suppress(OSError):
        os.chmod(tmp, _FILE_MODE)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise FileNotFoundError(f"the writer did not create the temporary file {tmp_path} for {path}.")
        with open(tmp_path, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", encoding: str | None = None, newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; rename it over ``path`` on success.

    The data is flushed and ``fsync``-ed before the rename, and the folder entry is synced
    after it. If the body of the ``with`` block raises, the temporary file is deleted and
    ``path`` is left untouched.

    Args:
        path: destination file; its parent folder is created if needed.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: text encoding (text mode only), default UTF-8.
        newline: passed to :func:`open` in text mode (use ``""`` for the csv module).

    Raises:
        ValueError: if ``mode`` is not a write mode or ``path`` is not a file path.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"mode must be 'w', 'wt' or 'wb', got {mode!r}.")
    path = _prepare(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    with contextlib.suppress(OSError):
        os.chmod(tmp, _FILE_MODE)
    binary = "b" in mode
    try:
        if binary:
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """``torch.save(obj, path)`` through a temporary file and an atomic rename.

    Args:
        obj: anything :func:`torch.save` accepts (typically a dict of state dicts).
        path: destination ``.pt`` file.

    Returns:
        The destination path.
    """
    import torch

    path = Path(path)
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    try:
        import torch

        if isinstance(obj, torch.Tensor):
            return obj.detach().cpu().tolist()
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable.")


def _nan_to_none(obj: Any) -> Any:
    """Replace NaN/Inf floats by ``None`` so the file is strict JSON (readable by any parser)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.floating) and not np.isfinite(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def atomic_save_json(obj: Any, path: PathLike, indent: int = 2, nan_as_null: bool = True) -> Path:
    """Write ``obj`` as JSON atomically.

    Args:
        obj: JSON-serialisable object; numpy scalars/arrays, tensors and paths are converted.
        path: destination file.
        indent: JSON indentation.
        nan_as_null: write NaN/Inf as ``null`` (strict JSON) instead of the non-standard ``NaN``.

    Returns:
        The destination path.
    """
    if nan_as_null:
        obj = _nan_to_none(obj)
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=not nan_as_null)
    with atomic_write(path, "w") as f:
        f.write(text + "\n")
    return Path(path)


def atomic_save_csv(rows: Sequence[Mapping[str, Any]] | Any, path: PathLike, fieldnames: Sequence[str] | None = None) -> Path:
    """Write rows (a list of dicts, or a pandas ``DataFrame``) as CSV atomically.

    Args:
        rows: list of mappings with the same keys, or a ``pandas.DataFrame`` (written without
            its index).
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
        fieldnames = []
        for row in rows:
            for k in row:
                if k not in fieldnames:
                    fieldnames.append(k)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(fieldnames), extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
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
    """Save a 2D (grey) or ``(H, W, 3|4)`` uint8 array as a PNG atomically.

    Args:
        array: image array; floats in [0, 1] are scaled to 0..255.
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


def atomic_save_nifti(data: Any, affine: Any, path: PathLike, header: Any = None, dtype: Any = None) -> Path:
    """Write a NIfTI image (``.nii`` or ``.nii.gz``) atomically with nibabel.

    Args:
        data: array (a tensor is moved to numpy), spatial axes first as nibabel expects.
        affine: 4x4 voxel-to-world matrix (kept exactly, so predictions keep the input geometry).
        path: destination ``.nii`` / ``.nii.gz`` file.
        header: optional nibabel header to copy (e.g. the input image's).
        dtype: optional output dtype (e.g. ``np.uint8`` for label maps).

    Returns:
        The destination path.
    """
    import nibabel as nib

    path = Path(path)
    if not (path.name.endswith(".nii") or path.name.endswith(".nii.gz")):
        raise ValueError(f"path must end with .nii or .nii.gz, got {path.name!r}.")
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    arr = np.asarray(data)
    if dtype is not None:
        arr = arr.astype(dtype)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got shape {affine.shape}.")
    img = nib.Nifti1Image(arr, affine, header=header)
    if dtype is not None:
        img.set_data_dtype(dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, str(tmp))
    return path
