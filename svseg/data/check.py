"""The one input check that training, prediction and evaluation share.

nnU-Net runs ``verify_dataset_integrity`` before it trains; MONAI's readers raise on the first
unreadable file, deep inside a data loader worker, with a traceback that names no case. This module
checks every case *before* any work starts and turns each problem into one :class:`InputError`
whose message names the user's own file and the problem, e.g.
``ch2.nii.gz: truncated gzip stream`` or ``case3_seg.nii.gz: label ids [7] are not in the class
list 0..2 (background, grey matter, white matter)``.

Checked per case: the file exists, is not empty, has a file type the data set declares, can be read
whole (a truncated gzip stream, a corrupt header), holds no NaN/inf, has the expected number of
spatial dimensions and channels; a label has the image's shape and affine, integer values, and
only ids of the class list.

A data set's cases are checked once: :func:`check_items` keeps the results in a cache keyed by each
file's path, size and modification time (``$SVSEG_DATA_DIR/input_checks.json``), so a rerun over
unchanged files is instant.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.transforms import LoadImage

from svseg.io import is_image_2d, read_image_2d
from svseg.data.readers import H5Reader, NPZReader, split_key
from svseg.errors import InputError
from svseg.io import atomic_save_json

__all__ = ["InputError", "read_checked", "check_case", "check_items", "file_suffix", "file_list", "default_cache_path"]

logger = logging.getLogger(__name__)

_SUFFIXES = (".nii.gz", ".nii", ".npy.h5", ".h5", ".hdf5", ".npz", ".nrrd", ".mha", ".mhd", ".png", ".jpg",
             ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")
_CACHE_VERSION = 2


def file_suffix(path: str | os.PathLike) -> str:
    """The file type of ``path`` (``.nii.gz``, ``.h5``, ``.png``, ...), lower case; ``file.h5::key`` selectors dropped."""
    name = Path(split_key(os.fspath(path))[0]).name.lower()
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def default_cache_path() -> Path:
    """``$SVSEG_DATA_DIR/input_checks.json`` (default ``~/.cache/svseg/input_checks.json``)."""
    base = os.environ.get("SVSEG_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "svseg")
    return Path(base) / "input_checks.json"


def _reason(exc: BaseException) -> str:
    """A short cause for a reader failure (the innermost error, gzip/zlib named plainly)."""
    chain = [exc]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        nxt = chain[-1].__cause__ or chain[-1].__context__
        if nxt in chain:
            break
        chain.append(nxt)
    for e in chain:
        if isinstance(e, EOFError) or "end-of-stream marker" in str(e):
            return "truncated gzip stream"
        if isinstance(e, (gzip.BadGzipFile, zlib.error)):
            return f"corrupt gzip stream ({e})"
    inner = chain[-1]
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    if "Cannot work out file type" in text:
        return "cannot be read: not an image file of a known format"
    return f"cannot be read: {text}"


def _gzip_problem(file: str) -> str | None:
    """Why a ``.gz`` file's stream is broken (truncated, not gzip), or ``None`` when it decompresses whole."""
    if not file.lower().endswith(".gz"):
        return None
    try:
        with gzip.open(file, "rb") as f:
            while f.read(1 << 24):
                pass
    except EOFError:
        return "truncated gzip stream"
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        return f"corrupt gzip stream ({e})"
    return None


def read_checked(path: str | os.PathLike | Sequence[str], mask: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a whole image or label file as a channel-first array and its affine, or raise :class:`InputError`.

    ``path`` may list several files (nnU-Net's ``case_0000``, ``case_0001`` channels): they are read one
    by one and stacked as channels. ``mask=True`` reads a 2D image file by svseg's mask rule
    (:mod:`svseg.data.images2d`).
    """
    if isinstance(path, (list, tuple)):
        parts = [read_checked(p, mask=mask) for p in path]
        for p, (arr, _) in zip(path[1:], parts[1:]):
            if arr.shape[1:] != parts[0][0].shape[1:]:
                raise InputError(split_key(os.fspath(p))[0], f"channel shape {tuple(arr.shape[1:])} differs from "
                                 f"{Path(split_key(os.fspath(path[0]))[0]).name} {tuple(parts[0][0].shape[1:])}")
        return np.concatenate([a for a, _ in parts], axis=0), parts[0][1]
    path_str = os.fspath(path)
    file, _ = split_key(path_str)
    if not os.path.exists(file):
        raise InputError(file, "file does not exist")
    if os.path.isdir(file):
        raise InputError(file, "is a folder, not an image file")
    if os.path.getsize(file) == 0:
        raise InputError(file, "file is empty (0 bytes)")
    try:
        if is_image_2d(file):
            array = read_image_2d(file, mask=mask)
            return array, np.eye(array.ndim)
        if file_suffix(file) in (".nii", ".nii.gz"):
            # nibabel directly: it reads the whole stream, so a truncated file fails here, by name
            nifti = nib.load(file)
            array = np.asarray(nifti.dataobj)
            array = np.moveaxis(array, -1, 0) if array.ndim == 4 else array[None]
            return array, np.asarray(nifti.affine, dtype=np.float64)
        image = LoadImage(image_only=True, ensure_channel_first=True, reader=_reader_for(path_str))(path_str)
    except ValueError as e:
        if is_image_2d(file):
            raise InputError(file, str(e)) from e
        raise InputError(file, _gzip_problem(file) or _reason(e)) from e
    except Exception as e:  # noqa: BLE001 - every reader failure becomes one line naming the file
        raise InputError(file, _gzip_problem(file) or _reason(e)) from e
    array = np.asarray(image)
    affine = getattr(image, "affine", None)
    return array, (None if affine is None else np.asarray(affine, dtype=np.float64))


def _reader_for(path: str) -> Any:
    suffix = file_suffix(path)
    if suffix in (".h5", ".hdf5", ".npy.h5"):
        return H5Reader()
    if suffix == ".npz":
        return NPZReader()
    return None


def check_case(image: str | os.PathLike, label: str | os.PathLike | None = None, *,
               num_classes: int | None = None, class_names: Sequence[str] | None = None,
               in_channels: int | None = None, spatial_dims: int = 3,
               suffixes: Iterable[str] | None = None, channels_rule: str | None = None) -> dict[str, Any]:
    """Check one case; return a small summary (shape, channels, label ids) or raise :class:`InputError`.

    Args:
        image: the image file (``file.h5::image`` selectors allowed).
        label: its label file, if any.
        num_classes: number of classes (background included); label ids must lie in ``0..num_classes-1``.
        class_names: the class names, for the message.
        in_channels: expected image channels.
        spatial_dims: expected spatial dimensions of the image (3 for volumes, 2 for images).
        suffixes: the file types the data set declares (e.g. ``{".nii.gz"}``); others are refused.
        channels_rule: where ``in_channels`` comes from, for the message (default "the network expects").
    """
    allowed = {s.lower() for s in suffixes} if suffixes else None
    for path in [*file_list(image), *file_list(label)]:
        if allowed is not None and file_suffix(path) not in allowed:
            raise InputError(split_key(os.fspath(path))[0],
                             f"file type {file_suffix(path) or '(none)'} is not one the data set declares "
                             f"({', '.join(sorted(allowed))})")
    img, img_affine = read_checked(image)
    image_file = split_key(os.fspath(file_list(image)[0]))[0]
    if img.ndim - 1 != spatial_dims:
        raise InputError(image_file, f"is {img.ndim - 1}D (shape {tuple(img.shape[1:])} with {img.shape[0]} "
                                     f"channel(s)), expected a {spatial_dims}D image")
    if in_channels is not None and img.shape[0] != int(in_channels):
        raise InputError(image_file, f"has {img.shape[0]} channel(s), {channels_rule or 'the network expects'} "
                                     f"{int(in_channels)}" + (" (an RGB image where grey is expected)"
                                                              if img.shape[0] == 3 and int(in_channels) == 1 else ""))
    finite = np.isfinite(img)
    if not finite.all():
        raise InputError(image_file, f"holds NaN or inf values ({int((~finite).sum())} voxels)")
    summary: dict[str, Any] = {"shape": [int(s) for s in img.shape[1:]], "channels": int(img.shape[0])}
    if label is None:
        return summary
    lab, lab_affine = read_checked(label, mask=True)
    label_file = split_key(os.fspath(file_list(label)[0]))[0]
    if tuple(lab.shape[1:]) != tuple(img.shape[1:]) or lab.shape[0] != 1:
        raise InputError(label_file, f"label shape {tuple(lab.shape[1:])} (channels {lab.shape[0]}) differs from the "
                                     f"image shape {tuple(img.shape[1:])} of {Path(image_file).name}")
    if img_affine is not None and lab_affine is not None and not np.allclose(img_affine, lab_affine, atol=1e-3):
        raise InputError(label_file, f"label affine differs from the affine of {Path(image_file).name}")
    if not np.isfinite(lab).all() or not np.array_equal(lab, np.round(lab)):
        raise InputError(label_file, "label holds non-integer values")
    ids = [int(v) for v in np.unique(lab)]
    if num_classes is not None:
        bad = [v for v in ids if v < 0 or v >= int(num_classes)]
        if bad:
            names = f" ({', '.join(class_names)})" if class_names else ""
            raise InputError(label_file, f"label ids {bad} are not in the class list 0..{int(num_classes) - 1}{names}")
    summary["label_ids"] = ids
    return summary


def file_list(path: Any) -> list:
    """The files of a datalist path: none, one, or several channel files."""
    if path is None:
        return []
    return list(path) if isinstance(path, (list, tuple)) else [path]


def _stamp(path: str | os.PathLike | Sequence[str] | None) -> list | None:
    if path is None:
        return None
    if isinstance(path, (list, tuple)):
        return [_stamp(p) for p in path]
    file = split_key(os.fspath(path))[0]
    try:
        st = os.stat(file)
    except OSError:
        return [os.fspath(path), -1, -1]
    return [os.fspath(os.path.abspath(file)) + (os.fspath(path)[len(file):]), st.st_size, st.st_mtime_ns]


def check_items(items: Sequence[Mapping[str, Any]], *, num_classes: int | None = None,
                class_names: Sequence[str] | None = None, in_channels: int | None = None,
                spatial_dims: int = 3, suffixes: Iterable[str] | None = None,
                cache_path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Check every ``{"image", "label"?}`` item with :func:`check_case` before any work starts.

    Results are cached by (path, size, mtime) of each file and the check settings, so an
    unchanged data set is checked once. The first bad case raises :class:`InputError`.

    Returns:
        The per-case summaries, in item order.
    """
    settings = json.dumps([num_classes, in_channels, spatial_dims, sorted(suffixes or [])])
    cache_file = Path(cache_path) if cache_path is not None else default_cache_path()
    cache: dict[str, Any] = {}
    if cache_file.is_file():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
    if cache.get("version") != _CACHE_VERSION:
        cache = {"version": _CACHE_VERSION, "cases": {}}
    cases = cache["cases"]
    summaries, changed = [], False
    for item in items:
        key = hashlib.sha1(json.dumps([_stamp(item.get("image")), _stamp(item.get("label")), settings]).encode()
                           ).hexdigest()
        if key in cases:
            summaries.append(cases[key])
            continue
        summary = check_case(item["image"], item.get("label"), num_classes=num_classes, class_names=class_names,
                             in_channels=in_channels, spatial_dims=spatial_dims, suffixes=suffixes)
        cases[key] = summary
        summaries.append(summary)
        changed = True
    if changed:
        try:
            atomic_save_json(cache, cache_file)
        except OSError as e:  # a read-only cache folder costs a re-check next time, nothing else
            logger.warning("input check cache %s not written: %s", cache_file, e)
    return summaries
