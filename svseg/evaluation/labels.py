"""Label maps as the metrics see them: class names, compact integer arrays, label bounding boxes.

Shared by :mod:`svseg.evaluation.evaluator` (per-class metrics) and
:mod:`svseg.evaluation.small_objects` (per-object metrics). Label files are NIfTI volumes or 2D
image masks (PNG, BMP, TIFF, JPEG), the latter read by :func:`svseg.data.read_image_2d`'s mask rules.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from svseg.io import is_image_2d, read_image_2d
from svseg.errors import InputError
from svseg.io import PathLike, load_nifti

__all__ = [
    "ClassNames",
    "class_name_list",
    "to_label_array",
    "label_pair",
    "label_boxes",
    "union_box",
    "load_label_volume",
]

#: names indexed by label id (background first), ``{label id: name}``, or ``None``
ClassNames = Sequence[str] | Mapping[int, str] | None


def class_name_list(class_names: ClassNames, max_label: int) -> list[str]:
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


def to_label_array(x: Any, name: str) -> np.ndarray:
    """A label volume as a non-negative integer numpy array of the smallest fitting dtype.

    A leading channel of 1 is dropped, a leading channel of K > 1 (one-hot or scores) is reduced
    by argmax; booleans become 0/1; floats must hold whole numbers.

    Args:
        x: 2D or 3D label map (numpy array or tensor), optionally with a leading channel.
        name: what ``x`` is, for the error messages (``"pred"``, a file name ...).

    Raises:
        ValueError: wrong number of axes, non-finite, non-integer or negative values, or a
            non-numeric dtype.
    """
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


def label_pair(pred: Any, ref: Any, class_names: ClassNames) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(pred, ref, names)``: both maps through :func:`to_label_array`, checked to have the same
    shape, and the class names (``None``: ``class_<id>`` up to the largest label of either map).

    Raises:
        ValueError: if the shapes differ (or a map is invalid, see :func:`to_label_array`).
    """
    p = to_label_array(pred, "pred")
    r = to_label_array(ref, "ref")
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must have the same shape, got {p.shape} and {r.shape}.")
    return p, r, class_name_list(class_names, max(int(p.max(initial=0)), int(r.max(initial=0))))


def label_boxes(p: np.ndarray, r: np.ndarray, n_labels: int) -> list[tuple[tuple[slice, ...] | None, tuple[slice, ...] | None]]:
    """Per label id 1..``n_labels``: the bounding boxes ``(in p, in r)`` (``None`` where absent),
    found in one pass over each map."""
    return list(zip(ndimage.find_objects(p, max_label=n_labels), ndimage.find_objects(r, max_label=n_labels)))


def union_box(boxes: Sequence[tuple[slice, ...] | None], shape: Sequence[int], margin: int = 0) -> tuple[slice, ...] | None:
    """The smallest box holding every given box, grown by ``margin`` and clipped to ``shape``;
    ``None`` when every box is ``None``."""
    present = [b for b in boxes if b is not None]
    if not present:
        return None
    return tuple(
        slice(max(min(b[i].start for b in present) - margin, 0), min(max(b[i].stop for b in present) + margin, shape[i]))
        for i in range(len(shape))
    )


def load_label_volume(path: PathLike) -> tuple[np.ndarray, np.ndarray, tuple[float, ...] | None]:
    """Read a label map file (NIfTI volume or 2D image mask) as a compact integer array.

    NIfTI: the labels in the on-disk orientation (no reorientation), the 4x4 affine and the voxel
    size of the spatial axes. A 2D image file (PNG, BMP, TIFF, JPEG; :func:`svseg.data.is_image_2d`):
    the class ids of :func:`svseg.data.read_image_2d` with ``mask=True`` as ``(H, W)`` (palette index
    or grey value; a 0/255 mask is binary), an identity affine, and spacing ``None``: such files carry
    no pixel size, so distances are in pixels unless the caller knows one. A TIFF stack gives
    ``(N, H, W)``.

    Returns:
        ``(labels, affine, spacing)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file does not hold a 2D/3D map of integer label ids (an
            :class:`svseg.errors.InputError` naming the file for 2D image files, e.g. a colour mask).
    """
    if is_image_2d(path):
        if not Path(path).is_file():
            raise FileNotFoundError(f"label file {str(path)!r} does not exist.")
        try:
            mask = read_image_2d(path, mask=True)
            labels = to_label_array(mask[0] if mask.shape[0] == 1 else mask, "the mask")
        except ValueError as e:
            raise InputError(path, str(e)) from e
        return labels, np.eye(labels.ndim + 1), None
    data, affine, spacing = load_nifti(path)
    labels = to_label_array(data, str(path))
    return labels, affine, spacing[: labels.ndim]
