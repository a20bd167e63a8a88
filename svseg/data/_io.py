"""Small file helpers shared by the data preparation code: atomic writes and atomic folders.

Every writer in :mod:`svseg.data` first writes to a temporary name in the destination folder and
then renames it (``os.replace``), so an interrupted or failed run never leaves a half-written
file under the final name. Whole output trees are built in a temporary sibling folder and moved
into place at the end (:class:`AtomicDirectory`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AtomicDirectory",
    "atomic_write_text",
    "atomic_write_json",
    "save_npz",
    "save_h5",
    "save_nifti",
]


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_npz(path: str | os.PathLike, compress: bool = True, **arrays: np.ndarray) -> Path:
    """Save arrays to a ``.npz`` file atomically (``np.savez_compressed`` by default)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_h5(
    path: str | os.PathLike, datasets: dict[str, np.ndarray], attrs: dict[str, Any] | None = None, compression: str | None = "gzip"
) -> Path:
    """Save named arrays (and file attributes) to an HDF5 file atomically."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in datasets.items():
                f.create_dataset(key, data=value, compression=compression)
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_nifti(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray, header: Any = None) -> Path:
    """Save ``array`` with ``affine`` as NIfTI (``.nii`` or ``.nii.gz``) atomically.

    The spacing stored in the header is the one implied by ``affine`` (nibabel sets the zooms
    from the affine); a ``header`` may be given to carry other fields from a source image.
    """
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64), header=header)
    img.set_data_dtype(np.asarray(array).dtype)
    img.header.set_xyzt_units("mm")
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    tmp = _tmp_name(path).with_name(_tmp_name(path).name + suffix)
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class AtomicDirectory:
    """Build a directory tree under a temporary sibling name and move it into place on success.

    Use as a context manager; ``path`` is the temporary folder to write into. On a clean exit the
    folder is renamed to ``final``; if ``final`` already exists it is replaced only when
    ``overwrite`` is True (the old tree is moved aside first, then deleted). On an exception
    the temporary folder is deleted and ``final`` is left untouched.

    Args:
        final: the destination folder.
        overwrite: replace an existing ``final``.
        keep_existing: optional callable; when it returns True at the end (e.g. another process
            finished the same output meanwhile), the new tree is discarded and ``final`` kept.
    """

    def __init__(self, final: str | os.PathLike, overwrite: bool = False, keep_existing=None) -> None:
        self.final = Path(final).expanduser().absolute()
        self.overwrite = overwrite
        self.keep_existing = keep_existing
        self.path: Path | None = None

    def __enter__(self) -> Path:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.tmp-", dir=self.final.parent))
        return self.path

    def __exit__(self, exc_type, exc, tb) -> bool:
        assert self.path is not None
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        old = None
        if self.keep_existing is not None and self.final.exists() and self.keep_existing():
            shutil.rmtree(self.path, ignore_errors=True)
            return False
        try:
            if self.final.is_dir() and not any(self.final.iterdir()):
                self.final.rmdir()  # an empty placeholder folder is simply replaced
            if self.final.exists():
                if not self.overwrite:
                    raise FileExistsError(f"output folder {self.final} already exists; pass overwrite/force to replace it.")
                old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
                os.replace(self.final, old)
            os.replace(self.path, self.final)
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            if old is not None and not self.final.exists():
                os.replace(old, self.final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return False
