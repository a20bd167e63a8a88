"""Datasets for training 2D networks on 3D data and for evaluating them on whole volumes.

* :class:`SliceDataset`: 2D training samples drawn from 3D volumes (NIfTI, H5) or from
  TransUNet npz slices; yields ``{"image": (C, H, W), "label": (1, H, W), "case", "slice"}``
  then applies a 2D dictionary transform. Loaded volumes are cached (per worker process).
* :func:`volume_dataset`: a MONAI ``Dataset`` of whole volumes for evaluation/inference:
  ``LoadImaged`` (channel first, metadata kept: affine, spacing, filename) + the intensity rule.

Both accept the entries of :func:`svseg.data.datalist.datalist_for`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from monai.data import Dataset, MetaTensor
from monai.transforms import Compose, EnsureTyped, LoadImaged

from svseg.data.images2d import Image2DReader
from svseg.io import is_image_2d
from svseg.data.readers import H5Reader, NPZReader, split_key
from svseg.data.transforms import intensity_transform

__all__ = ["SliceDataset", "volume_dataset", "volume_transforms", "with_selectors", "num_slices", "LoadVolumed",
           "first_file"]

_SELECTABLE = (".npz", ".h5", ".hdf5", ".hdf")


def with_selectors(item: dict[str, Any], keys: Sequence[str] = ("image", "label")) -> dict[str, Any]:
    """Add a ``::key`` dataset selector to H5/npz paths that lack one (``image`` reads ``image``...).

    TransUNet files keep image and label in one file; without a selector both keys would read
    the same array.
    """
    new = dict(item)
    for key in keys:
        value = new.get(key)
        if isinstance(value, (str, os.PathLike)):
            path, sel = split_key(os.fspath(value))
            if sel is None and path.lower().endswith(_SELECTABLE):
                new[key] = f"{path}::{key}"
    return new


def _npz_shape(path: str, key: str) -> tuple[int, ...]:
    """Shape of one array of an ``.npz`` file, read from the ``.npy`` header (no data loaded)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            member = f"{key}.npy"
            if member not in zf.namelist():
                found = sorted(n[:-4] for n in zf.namelist() if n.endswith(".npy"))
                raise KeyError(f"{path}: array {key!r} not found; the file holds {found}.")
            with zf.open(member) as f:
                version = np.lib.format.read_magic(f)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, _ = reader(f)
    except KeyError:
        raise
    except Exception as e:  # noqa: BLE001 - reported with the file name
        raise ValueError(f"{path}: cannot read npz array {key!r} (truncated or corrupt?): {e}") from e
    return tuple(int(s) for s in shape)


def num_slices(path: str, axis: int = 2) -> int:
    """Number of 2D slices along MONAI spatial ``axis`` of a volume file, read from its header.

    Returns 1 for a 2D file (a TransUNet npz slice).

    Raises:
        FileNotFoundError: when the file is missing.
        ValueError: when the file cannot be read or has an unexpected number of dimensions.
    """
    if isinstance(path, (list, tuple)):
        path = path[0]
    p, sel = split_key(path)
    if not Path(p).is_file():
        raise FileNotFoundError(f"{p}: file not found.")
    low = p.lower()
    if is_image_2d(p):
        return 1
    if low.endswith(".npz"):
        shape = _npz_shape(p, sel or "image")[::-1]
    elif low.endswith((".h5", ".hdf5", ".hdf")):
        import h5py

        try:
            with h5py.File(p, "r") as f:
                shape = f[sel or "image"].shape[::-1]
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{p}: cannot read HDF5 dataset {sel or 'image'!r}: {e}") from e
    elif low.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            shape = nib.load(p).shape
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{p}: cannot read NIfTI header: {e}") from e
    else:
        from monai.transforms import LoadImage

        shape = tuple(LoadImage(image_only=True)(p).shape)
    shape = tuple(shape)
    while len(shape) > 3 and shape[-1] == 1:  # (X, Y, Z, 1) NIfTI
        shape = shape[:-1]
    if len(shape) == 2:
        return 1
    if len(shape) != 3:
        raise ValueError(f"{p}: expected a 2D slice or a 3D volume, got shape {tuple(shape)}.")
    if not 0 <= axis < 3:
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}.")
    return int(shape[axis])


def first_file(path: str | os.PathLike | Sequence[str]) -> str:
    """The file of a datalist path: the first of several channel files, without a ``::key`` selector."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    return split_key(os.fspath(path))[0]


def _loader(path: Any, keys: Sequence[str]) -> Callable:
    p = first_file(path)
    if p.lower().endswith(".npz"):
        return LoadImaged(keys, reader=NPZReader(), ensure_channel_first=True, image_only=True)
    if p.lower().endswith((".h5", ".hdf5", ".hdf")):
        return LoadImaged(keys, reader=H5Reader(), ensure_channel_first=True, image_only=True)
    if is_image_2d(p):  # images and masks follow svseg's 2D rules (svseg.data.images2d)
        steps = [LoadImaged(k, reader=Image2DReader(mask=(k == "label")), ensure_channel_first=True,
                            image_only=True, allow_missing_keys=True) for k in keys]
        return Compose(steps)
    return LoadImaged(keys, ensure_channel_first=True, image_only=True)


class SliceDataset(torch.utils.data.Dataset):
    """2D slices of 3D volumes (or TransUNet npz slices) as training samples.

    Args:
        data: datalist entries ``{"image": path, "label": path, "case": id}``; paths may be NIfTI
            or H5 volumes (every slice along ``axis`` becomes a sample) or 2D npz slices (one
            sample each, ``"slice"`` taken from the entry).
        transform: a 2D dictionary transform applied to each sample (augmentation, resizing).
        axis: MONAI spatial axis (0, 1, 2) along which volumes are sliced; 2 = axial for
            NIfTI volumes in the usual (x, y, z) order.
        volume_transform: a dictionary transform applied once to each loaded volume (before
            caching), e.g. :func:`svseg.data.transforms.intensity_transform` with
            ``prepared=False`` for raw scans (per-volume rules must see the whole volume).
        cache_volumes: keep loaded volumes in memory (per worker process).
        cache_size: at most this many volumes in the cache (least recently used are dropped);
            ``None`` keeps all of them.
        keys: the image and label keys.
        slice_filter: optional ``f(case, slice_index) -> bool`` to keep only some slices.

    Each sample is ``{"image": MetaTensor (C, H, W), "label": MetaTensor (1, H, W), "case": str,
    "slice": int}`` before ``transform``.
    """

    def __init__(
        self,
        data: Sequence[dict[str, Any]],
        transform: Callable | None = None,
        axis: int = 2,
        volume_transform: Callable | None = None,
        cache_volumes: bool = True,
        cache_size: int | None = None,
        keys: Sequence[str] = ("image", "label"),
        slice_filter: Callable[[str, int], bool] | None = None,
    ) -> None:
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis!r}.")
        if cache_size is not None and cache_size < 1:
            raise ValueError(f"cache_size must be None or >= 1, got {cache_size}.")
        self.data = [with_selectors(d, keys) for d in data]
        self.keys = tuple(keys)
        self.transform = transform
        self.axis = axis
        self.volume_transform = volume_transform
        self.cache_volumes = cache_volumes
        self.cache_size = cache_size
        self._cache: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.index: list[tuple[int, int | None]] = []
        for i, item in enumerate(self.data):
            if "image" not in item:
                raise ValueError(f"datalist entry {i} has no 'image' path: {item!r}.")
            n = num_slices(item[self.keys[0]], axis)
            case = str(item.get("case", i))
            if n == 1 and first_file(item[self.keys[0]]).lower().endswith(".npz"):
                k = int(item.get("slice", 0))
                if slice_filter is None or slice_filter(case, k):
                    self.index.append((i, None))
                continue
            for k in range(n):
                if slice_filter is None or slice_filter(case, k):
                    self.index.append((i, k))

    def __len__(self) -> int:
        return len(self.index)

    @property
    def cached_volumes(self) -> int:
        """Number of loaded volumes held in this process's cache (at most ``cache_size``)."""
        return len(self._cache)

    def _load(self, i: int) -> dict[str, Any]:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        item = self.data[i]
        keys = [k for k in self.keys if k in item]
        loaded = _loader(item[keys[0]], keys)(item)
        if self.volume_transform is not None:
            loaded = self.volume_transform(loaded)
        for k in keys:
            if loaded[k].ndim not in (3, 4):
                raise ValueError(f"{item[k]}: loaded array has shape {tuple(loaded[k].shape)}; expected (C, H, W[, D]).")
        if self.cache_volumes:
            self._cache[i] = loaded
            if self.cache_size is not None:
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return loaded

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} slices.")
        i, k = self.index[index]
        vol = self._load(i)
        item = self.data[i]
        sample: dict[str, Any] = {"case": str(item.get("case", i)), "slice": int(item.get("slice", 0)) if k is None else k}
        for key in self.keys:
            if key not in vol:
                continue
            arr = vol[key]
            if k is not None and arr.ndim == 4:
                arr = arr.select(self.axis + 1, k)
            t = torch.as_tensor(arr).float().contiguous()
            sample[key] = MetaTensor(
                t.as_subclass(torch.Tensor) if isinstance(t, MetaTensor) else t,
                meta={"filename_or_obj": first_file(item[key]), "slice": sample["slice"], "case": sample["case"]},
            )
        if self.transform is not None:
            sample = self.transform(sample)
        return sample


def volume_transforms(spec: Any = None, prepared: bool = True, keys: Sequence[str] = ("image", "label")) -> Compose:
    """Load whole volumes channel-first with metadata, apply the intensity rule, cast to float32.

    Args:
        spec: a :class:`~svseg.data.specs.DatasetSpec` or name (``None``: no intensity step).
        prepared: the data were written by an svseg converter (intensity already applied).
        keys: image key first, then the label key (a missing label is allowed).
    """
    steps: list[Callable] = [LoadVolumed(keys)]
    if spec is not None:
        steps.append(intensity_transform(spec, keys=keys[0], prepared=prepared))
    steps.append(EnsureTyped(list(keys), dtype=torch.float32, allow_missing_keys=True))
    return Compose(steps)


class LoadVolumed:
    """Load whole volumes channel first with metadata, picking the reader per entry.

    MONAI's ``LoadImaged`` takes one reader choice for all files; svseg data sets mix NIfTI (MONAI's
    default readers) with TransUNet H5/NPZ files that hold image and label in one file, selected as
    ``file.h5::label`` (:func:`with_selectors` adds the selector). A missing label key is allowed
    (inference). The source recorded in the meta data is the file, not the selector.

    Config snippet (a bundle's ``preprocessing``)::

        {"_target_": "svseg.data.LoadVolumed", "keys": ["image", "label"]}
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = tuple(keys)

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        item = with_selectors(data, self.keys)
        keys = [k for k in self.keys if k in item]
        out = _loader(item[keys[0]], keys)(item)
        for k in keys:  # report the file, not the "file::dataset" selector, as the source
            meta = getattr(out[k], "meta", None)
            if meta is not None and "filename_or_obj" in meta:
                path, sel = split_key(str(meta["filename_or_obj"]))
                meta["filename_or_obj"] = path
                if sel:
                    meta["dataset_key"] = sel
        return out


def volume_dataset(
    data: Sequence[dict[str, Any]],
    spec: Any = None,
    prepared: bool = True,
    transform: Callable | None = None,
    keys: Sequence[str] = ("image", "label"),
) -> Dataset:
    """A MONAI ``Dataset`` of whole volumes for evaluation or inference.

    Each item is ``{"image": MetaTensor (C, H, W, D), "label": MetaTensor (1, H, W, D), "case", ...}``;
    the MetaTensors keep ``affine``, ``pixdim`` (spacing) and ``filename_or_obj``.

    Args:
        data: datalist entries (:func:`svseg.data.datalist.datalist_for`).
        spec: data set spec or name for the intensity rule (``None``: none).
        prepared: the files come from an svseg converter (rule already applied).
        transform: extra dictionary transform applied after loading.
        keys: image and label keys.
    """
    steps: list[Callable] = [volume_transforms(spec, prepared, keys)]
    if transform is not None:
        steps.append(transform)
    return Dataset(list(data), transform=Compose(steps))
