"""The MONAI reader of 2D image files (PNG, JPEG, BMP, TIFF), by svseg's image and mask rules.

The rules and the file reading are :func:`svseg.io.read_image_2d` (images ``(C, H, W)``; masks ``(1, H, W)``
class ids: grey value = id, 0/255 = binary, palette index = id, colour refused). This module wraps it as a
MONAI ``ImageReader`` so ``LoadImage(reader=Image2DReader(mask=...))`` and the bundles' ``LoadVolumed`` read
2D data sets, and stacks nnU-Net's per-channel files into one image.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
from monai.data.image_reader import ImageReader
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

from svseg.io import is_image_2d, read_image_2d

__all__ = ["Image2DReader"]


class Image2DReader(ImageReader):
    """MONAI ``ImageReader`` over :func:`read_image_2d`, so ``LoadImage(reader=Image2DReader())`` reads
    PNG/JPEG/BMP/TIFF images (``mask=False``) or masks (``mask=True``) by svseg's rules.

    Several files given together (nnU-Net's ``case_0000.png``, ``case_0001.png``) are stacked as the
    channels of one image. The affine is the identity (one pixel = one unit) unless ``spacing``
    (row, column) is given.
    """

    def __init__(self, mask: bool = False, spacing: Sequence[float] | None = None) -> None:
        super().__init__()
        self.mask = mask
        self.spacing = None if spacing is None else [float(s) for s in spacing][:2]

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        return all(is_image_2d(f) for f in ensure_tuple(filename))

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs: Any) -> list[str]:
        return [os.fspath(f) for f in ensure_tuple(data)]

    def get_data(self, img: list[str]) -> tuple[np.ndarray, dict]:
        arrays = []
        for f in img:
            try:
                arrays.append(read_image_2d(f, mask=self.mask))
            except ValueError as e:
                raise ValueError(f"{f}: {e}") from e
            if arrays[0].shape[1:] != arrays[-1].shape[1:]:
                raise ValueError(f"{f}: shape {arrays[-1].shape[1:]} differs from {img[0]} {arrays[0].shape[1:]}")
        arr = np.concatenate(arrays, axis=0) if len(arrays) > 1 else arrays[0]
        spatial = arr.shape[1:]
        affine = np.eye(len(spatial) + 1)
        if self.spacing is not None and len(spatial) == 2:
            affine[0, 0], affine[1, 1] = self.spacing
        meta = {
            MetaKeys.AFFINE: affine,
            MetaKeys.ORIGINAL_AFFINE: affine.copy(),
            MetaKeys.SPATIAL_SHAPE: np.asarray(spatial),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.ORIGINAL_CHANNEL_DIM: 0,
            "image_2d": True,
            "source_suffix": os.path.splitext(img[0])[1].lower(),
        }
        return arr, meta
