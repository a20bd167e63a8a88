"""MONAI image readers for the TransUNet file formats: HDF5 volumes and NPZ slices.

Axis convention (the one thing to know):

* TransUNet files store ``(D, H, W)`` volumes and ``(H, W)`` slices: ``D`` = axial slices (z),
  ``H`` = rows (y), ``W`` = columns (x); this is numpy order of SimpleITK's ``GetArrayFromImage``.
* MONAI's readers (``NibabelReader``, ``ITKReader``) return NIfTI arrays with spatial axes in
  voxel-index order ``(i, j, k)`` = ``(x, y, z)``, which MONAI calls ``(H, W, D)``.
* :class:`H5Reader` and :class:`NPZReader` therefore return the file array transposed
  (``arr.transpose(2, 1, 0)`` for 3D, ``arr.T`` for 2D) by default, so that a NIfTI volume, its H5
  conversion and its NPZ slices written by :mod:`svseg.data` load to *identical* MONAI arrays and
  slice ``k`` of the volume along the last axis is NPZ slice ``k``. Pass ``transpose=False`` to
  get the raw file order.

Metadata: the ``affine`` attribute of an H5 file (4x4, NIfTI/RAS convention) becomes the MONAI
affine; without it, a ``spacing`` attribute (x, y, z in mm) gives ``diag(spacing)``; without both
the affine is the identity (1 voxel = 1 unit, as in the original TransUNet release, whose HD95 is
in voxels). All other file attributes are copied into the metadata.

Errors never fall back to another reader: :meth:`read` only records the request, and the file is
opened in :meth:`get_data`, which ``LoadImage`` calls outside its reader-fallback loop. Every error
names the file and the problem.

Registration: importing this module adds ``H5Reader`` to MONAI's ``SUPPORTED_READERS`` (so
``LoadImage()`` reads ``.h5`` files by itself) and makes the names ``"H5Reader"`` and
``"NPZReader"`` resolvable, e.g. ``LoadImaged(keys, reader="H5Reader")``. The dotted paths
``"svseg.data.readers.H5Reader"`` work too. A TransUNet H5 file holds image and label together; a
filename may select its dataset with a ``::key`` suffix (``case0001.npy.h5::label``), otherwise the
reader's ``key`` is used.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from monai.data.image_reader import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

__all__ = ["H5Reader", "NPZReader", "split_key", "TRANSUNET_TO_MONAI_3D", "register_readers"]

#: transpose applied to a (D, H, W) TransUNet array to obtain MONAI's (x, y, z) spatial order.
TRANSUNET_TO_MONAI_3D = (2, 1, 0)

_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".npy.h5")


def split_key(filename: str | os.PathLike) -> tuple[str, str | None]:
    """Split ``"file.h5::label"`` into ``("file.h5", "label")``; no selector gives ``(file, None)``."""
    name = os.fspath(filename)
    if "::" in name:
        path, key = name.rsplit("::", 1)
        return path, key or None
    return name, None


def _to_monai_order(arr: np.ndarray, transpose: bool, filename: str) -> np.ndarray:
    if not transpose:
        return arr
    if arr.ndim == 3:
        return np.ascontiguousarray(arr.transpose(TRANSUNET_TO_MONAI_3D))
    if arr.ndim == 2:
        return np.ascontiguousarray(arr.T)
    raise ValueError(f"{filename}: expected a 2D (H, W) or 3D (D, H, W) array, got shape {tuple(arr.shape)}.")


class _Pending:
    """What :meth:`read` returns: the request, opened lazily in ``get_data``."""

    def __init__(self, filenames: Sequence[str]):
        self.filenames = list(filenames)


class _TransUNetReader(ImageReader):
    suffixes: tuple[str, ...] = ()
    kind = ""

    def __init__(self, key: str = "image", transpose: bool = True, ndim: int | None = None, dtype: Any = None) -> None:
        super().__init__()
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty dataset name, got {key!r}.")
        if ndim not in (None, 2, 3):
            raise ValueError(f"ndim must be None, 2 or 3, got {ndim!r}.")
        self.key = key
        self.transpose = bool(transpose)
        self.ndim = ndim
        self.dtype = dtype

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        for name in ensure_tuple(filename):
            path, _ = split_key(name)
            if not path.lower().endswith(self.suffixes):
                return False
        return True

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs) -> _Pending:
        return _Pending([os.fspath(d) for d in ensure_tuple(data)])

    def _load_one(self, filename: str) -> tuple[np.ndarray, dict]:
        raise NotImplementedError

    def _locate(self, filename: str) -> tuple[str, str]:
        """``(path, key)`` of a ``file[::key]`` name (default key: the reader's); the file must exist."""
        path, key = split_key(filename)
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: {self.kind} file not found.")
        return path, key or self.key

    def _check(self, arr: np.ndarray, filename: str, key: str) -> np.ndarray:
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            raise ValueError(f"{filename}: dataset {key!r} is not numeric (dtype {arr.dtype}).")
        if self.ndim is not None and arr.ndim != self.ndim:
            raise ValueError(
                f"{filename}: dataset {key!r} has {arr.ndim} dimensions (shape {tuple(arr.shape)}), expected {self.ndim}."
            )
        if arr.ndim not in (2, 3):
            raise ValueError(f"{filename}: dataset {key!r} has shape {tuple(arr.shape)}; expected 2D or 3D.")
        return arr

    def get_data(self, img: _Pending) -> tuple[np.ndarray, dict]:
        arrays, meta0 = [], None
        for filename in img.filenames:
            arr, meta = self._load_one(filename)
            arr = _to_monai_order(arr, self.transpose, filename)
            if self.dtype is not None:
                arr = arr.astype(self.dtype)
            arrays.append(arr)
            if meta0 is None:
                meta0 = meta
            elif arrays[0].shape != arr.shape:
                raise ValueError(
                    f"{filename}: shape {arr.shape} differs from {img.filenames[0]} {arrays[0].shape}; cannot stack."
                )
        assert meta0 is not None
        if len(arrays) > 1:
            meta0[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
            return np.stack(arrays, axis=0), meta0
        return arrays[0], meta0

    def _meta(self, arr: np.ndarray, attrs: dict, filename: str, key: str) -> dict:
        ndim = arr.ndim
        meta: dict[str, Any] = {}
        for k, v in attrs.items():
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            meta[str(k)] = v
        affine = np.eye(4)
        if "affine" in attrs:
            affine = np.asarray(attrs["affine"], dtype=np.float64)
            if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
                raise ValueError(f"{filename}: attribute 'affine' must be a finite 4x4 matrix, got shape {affine.shape}.")
            if not self.transpose:
                # the file axes are (z, y, x): permute the affine columns to match
                perm = np.eye(4)
                perm[:3, :3] = np.eye(3)[:, list(TRANSUNET_TO_MONAI_3D)]
                affine = affine @ perm
        elif "spacing" in attrs:
            spacing = np.asarray(attrs["spacing"], dtype=np.float64).ravel()
            if spacing.size < ndim or not np.all(spacing > 0):
                raise ValueError(f"{filename}: attribute 'spacing' must hold {ndim} positive values, got {spacing}.")
            sp = list(spacing[:3]) + [1.0] * (3 - min(3, spacing.size))
            if not self.transpose:
                sp = sp[::-1]
            affine = np.diag([*sp, 1.0])
        if ndim == 2:
            affine2 = np.eye(3)
            affine2[:2, :2] = affine[:2, :2]
            affine2[:2, 2] = affine[:2, 3]
            affine = affine2
        meta.update(
            {
                MetaKeys.AFFINE: affine,
                MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(arr.shape if not self.transpose else arr.shape[::-1]),
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
                "dataset_key": key,
                "file_axes": "zyx" if ndim == 3 else "yx",
            }
        )
        meta["pixdim"] = np.asarray([1.0, *np.sqrt((affine[:ndim, :ndim] ** 2).sum(axis=0)), *([1.0] * (7 - ndim))])
        return meta


class H5Reader(_TransUNetReader):
    """Read one dataset (``key``) of an HDF5 file, e.g. TransUNet ``test_vol_h5/case0001.npy.h5``.

    Args:
        key: dataset to read (``"image"`` or ``"label"``); a ``file.h5::key`` filename overrides it.
        transpose: return MONAI (x, y, z) order (default) instead of the file's (z, y, x); see the
            module docstring.
        ndim: require a 2D or 3D dataset (``None``: either).
        dtype: cast the array to this dtype (``LoadImage`` casts again with its own ``dtype``).

    Example::

        from monai.transforms import LoadImaged
        from svseg.data.readers import H5Reader
        load = LoadImaged(["image", "label"], reader=H5Reader())
        sample = load({"image": "case0001.npy.h5::image", "label": "case0001.npy.h5::label"})
    """

    suffixes = _H5_SUFFIXES
    kind = "HDF5"

    def _load_one(self, filename: str) -> tuple[np.ndarray, dict]:
        import h5py

        path, key = self._locate(filename)
        try:
            with h5py.File(path, "r") as f:
                if key not in f:
                    raise KeyError(key)
                ds = f[key]
                if not isinstance(ds, h5py.Dataset):
                    raise ValueError(f"{path}: {key!r} is an HDF5 group, not a dataset.")
                arr = np.asarray(ds[()])
                attrs = dict(f.attrs.items())
                attrs.update({k: v for k, v in ds.attrs.items()})
        except KeyError:
            with h5py.File(path, "r") as f:
                found = sorted(f.keys())
            raise KeyError(f"{path}: dataset {key!r} not found; the file holds {found}.") from None
        except OSError as e:
            raise ValueError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from e
        arr = self._check(arr, path, key)
        return arr, self._meta(arr, attrs, path, key)


class NPZReader(_TransUNetReader):
    """Read one array (``key``) of a ``.npz`` file, e.g. a TransUNet ``train_npz`` slice.

    Args:
        key: array to read (``"image"`` or ``"label"``); a ``file.npz::key`` filename overrides it.
        transpose: return MONAI order (``arr.T`` for a 2D slice) so that the slice equals the
            matching NIfTI slice ``volume[:, :, k]``; see the module docstring.
        ndim: require a 2D or 3D array (``None``: either).
        dtype: cast the array to this dtype.

    Unlike MONAI's ``NumpyReader`` it reads one named array, never pickles, and raises (naming the
    file and the keys found) instead of falling back when the key is missing.
    """

    suffixes = (".npz",)
    kind = "NPZ"

    def _load_one(self, filename: str) -> tuple[np.ndarray, dict]:
        path, key = self._locate(filename)
        try:
            with np.load(path, allow_pickle=False) as z:
                if key not in z.files:
                    raise KeyError(f"{path}: array {key!r} not found; the file holds {sorted(z.files)}.")
                arr = np.asarray(z[key])
        except KeyError:
            raise
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
            raise ValueError(f"{path}: not a readable .npz file (truncated or corrupt?): {e}") from e
        arr = self._check(arr, path, key)
        return arr, self._meta(arr, {}, path, key)


def register_readers() -> None:
    """Make ``reader="H5Reader"`` / ``"NPZReader"`` resolvable and let ``LoadImage`` read ``.h5`` by default.

    Called on import of this module; calling it again is harmless.
    """
    import monai.data
    from monai.transforms.io import array as io_array

    io_array.SUPPORTED_READERS.setdefault("h5reader", H5Reader)
    # the bare class names are looked up in ``monai.data`` first by LoadImage
    for cls in (H5Reader, NPZReader):
        if not hasattr(monai.data, cls.__name__):
            setattr(monai.data, cls.__name__, cls)


register_readers()
