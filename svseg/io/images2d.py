"""2D image files (PNG, JPEG, BMP, TIFF) as svseg reads them: images and masks, channel first.

MONAI's ``PILReader`` returns ``(W, H)`` arrays, reads a palette PNG as RGB and knows no rule for
masks; TIFF microscopy files (16-bit, multi-channel, z-stacks) need ``tifffile``. svseg therefore
keeps one small reader for 2D files whose two rules are stated here and in ``docs/datasets.md``. It
lives in the base layer so that the data stage (:class:`svseg.data.Image2DReader`, the MONAI reader
over it), the metrics and the pictures all read a mask the same way.

**Images** become ``(C, H, W)`` float arrays in row/column order (``H`` = rows): grey (``L``,
16-bit, float) files give one channel, RGB(A) files three (the alpha channel is dropped), a palette
image its RGB colours. A TIFF of shape ``(N, H, W)`` with ``N`` not 3 or 4 is a stack, returned as
``(1, N, H, W)``, so the input check reports it as a 3D image.

**Masks** become ``(1, H, W)`` integer class ids:

* a palette (``P``) PNG: the palette index of each pixel is its class id;
* a grey PNG/TIFF/BMP (or an RGB one whose three channels are equal): the grey value is the class
  id, except that a mask holding only the values 0 and 255 is a binary mask and 255 becomes 1;
* a colour RGB mask is refused: svseg does not guess which colour is which class.

Any value that is not a declared class id afterwards is refused by the input check
(:mod:`svseg.data.check`), naming the file and the values. JPEG masks are lossy, so their values
rarely survive as exact ids; they are refused the same way.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

__all__ = ["IMAGE_2D_SUFFIXES", "is_image_2d", "read_image_2d"]

#: file endings read by :func:`read_image_2d` (compared case-insensitively)
IMAGE_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")


def is_image_2d(path: str | os.PathLike | Sequence[str]) -> bool:
    """Whether ``path`` (or the first of several channel files) is a 2D image file by its ending."""
    if isinstance(path, (list, tuple)):
        path = path[0] if path else ""
    return os.fspath(path).lower().endswith(IMAGE_2D_SUFFIXES)


def _read_pil(path: str, mask: bool) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()  # decode the whole file now: a truncated or corrupt file fails here
            mode = img.mode
            if mask and mode == "P":
                return np.asarray(img)[None]
            if mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
                mode = img.mode
            arr = np.asarray(img)
    except UnidentifiedImageError as e:
        raise ValueError(f"not a readable {os.path.splitext(path)[1].lstrip('.').upper()} image") from e
    except (OSError, SyntaxError) as e:
        raise ValueError(f"corrupt or truncated image file ({e})") from e
    if arr.ndim == 3:
        arr = arr[..., :3] if mode in ("RGBA", "LA", "RGBa") or arr.shape[-1] == 4 else arr
        if mode == "LA":
            arr = arr[..., :1]
        return np.moveaxis(arr, -1, 0)
    return arr[None]


def _read_tiff(path: str) -> np.ndarray:
    import tifffile

    try:
        arr = np.asarray(tifffile.imread(path))
    except Exception as e:  # noqa: BLE001 - reported with the file name by the caller
        raise ValueError(f"corrupt or unreadable TIFF file ({e})") from e
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        return np.moveaxis(arr[..., :3], -1, 0)
    if arr.ndim == 3:
        return arr[None]  # a stack: (1, N, H, W), reported as 3D by the input check
    raise ValueError(f"TIFF array of shape {arr.shape} is neither a 2D image nor a stack")


def read_image_2d(path: str | os.PathLike, mask: bool = False) -> np.ndarray:
    """Read one 2D image file as ``(C, H, W)`` (an image) or ``(1, H, W)`` class ids (``mask=True``).

    Raises:
        ValueError: an unreadable or corrupt file, or a colour RGB mask (the message says which).
    """
    path = os.fspath(path)
    arr = _read_tiff(path) if path.lower().endswith(_TIFF) else _read_pil(path, mask)
    if not mask:
        return arr.astype(np.float32) if arr.dtype != np.float32 else arr
    if arr.shape[0] == 3:
        if not (np.array_equal(arr[0], arr[1]) and np.array_equal(arr[0], arr[2])):
            raise ValueError("mask is a colour RGB image; svseg reads masks as class ids: grey values, palette "
                             "indices, or 0/255 for a binary mask")
        arr = arr[:1]
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.shape[0] == 1 and arr.ndim == 3:
        values = np.unique(arr)
        if 255 in values and set(values.tolist()) <= {0, 255}:
            arr = (arr == 255).astype(np.uint8)  # a binary 0/255 mask
    return arr
