"""Writers of SMALL SYNTHETIC folders in exactly the five papers' published data layouts, file names included.

The images are SYNTHETIC (noise plus a bright square; the mask is the square): they test the converters'
layout rules, checks and splits, not accuracy. The layouts:

* :func:`write_svanet`: ``<Set>/train/<stem>.jpg``, ``<Set>/val/`` (or ``test/``), ``<Set>/mask/<stem>.png``
  (anthonyweidai/SvANet ``readme/DATA.md``); ATLAS-style names ``im<N>.nii_<slice>`` with palette masks.
* :func:`write_uctransnet`: ``{Train,Val,Test}_Folder/{img,labelcol}``, PNG training and TIFF test images as
  in McGregorWwww/UCTransNet ``datasets/MoNuSeg``, 0/255 masks.
* :func:`write_awesome_isic`: ``ISIC2018_Task1-2_Training_Input/ISIC_<7 digits>.jpg`` and
  ``ISIC2018_Task1_Training_GroundTruth/ISIC_<id>_segmentation.png`` (0/255).
* :func:`write_msga`: ``{train,val,test}/{Img,GT}/Subj_<X>slice_<Y>.png``, grey levels 0/63/126/189/252.
* :func:`write_afma`: ``{train,val,test}/volume-<N>_<slice>.npy`` (channels-last HU) and
  ``segmentation-<N>_<slice>.npy`` next to them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

SIZE = 32


def square(i: int, size: int = SIZE, value: int = 1) -> np.ndarray:
    """A SYNTHETIC mask: a square whose position depends on ``i``."""
    mask = np.zeros((size, size), np.uint8)
    o = 4 + (i % 5) * 2
    mask[o:o + size // 3, o + 1:o + 1 + size // 3] = value
    return mask


def rgb_for(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A SYNTHETIC RGB image brighter where ``mask`` is set."""
    base = rng.integers(20, 90, (*mask.shape, 3))
    return np.clip(base + 120 * (mask[..., None] > 0), 0, 255).astype(np.uint8)


def write_svanet(root: Path, set_name: str = "ISIC2018", n_train: int = 6, n_val: int = 2, val_dir: str = "val",
                 size: int = SIZE) -> Path:
    """SvANet's ``dataset/<Set>`` folder; ATLAS gets sliced names ``im<N>.nii_<slice>`` and palette masks."""
    rng = np.random.default_rng(3)
    ds = root / set_name
    for sub in ("train", val_dir, "mask"):
        (ds / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_val):
        split = "train" if i < n_train else val_dir
        if set_name == "ATLAS":
            stem = f"im{i // 2}.nii_{4 * (i % 2)}"
            mask = square(i, size) + square(i + 2, size) * (i % 2)
            mask = np.minimum(mask, 2).astype(np.uint8)
            img = Image.fromarray(mask, mode="P")
            img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
        else:
            stem = f"ISIC_{i:07d}" if set_name == "ISIC2018" else f"{i + 1}_A_{split}"
            mask = square(i, size)
            img = Image.fromarray(mask * 255)
        Image.fromarray(rgb_for(mask, rng)).save(ds / split / f"{stem}.jpg", quality=95)
        img.save(ds / "mask" / f"{stem}.png")
    return ds


def write_uctransnet(root: Path, name: str = "MoNuSeg", n_train: int = 10, n_val: int = 2, n_test: int = 2,
                     size: int = SIZE) -> Path:
    """The UCTransNet MoNuSeg/GlaS folder: PNG training/validation images, TIFF test images, 0/255 PNG masks."""
    rng = np.random.default_rng(4)
    ds = root / name
    k = 0
    for folder, n in (("Train_Folder", n_train), ("Val_Folder", n_val), ("Test_Folder", n_test)):
        (ds / folder / "img").mkdir(parents=True, exist_ok=True)
        (ds / folder / "labelcol").mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            stem = f"TCGA-{k:02d}-{1000 + k}-01Z-00-DX1"
            mask = square(k, size)
            image = rgb_for(mask, rng)
            if folder == "Test_Folder":
                tifffile.imwrite(ds / folder / "img" / f"{stem}.tif", image, photometric="rgb")
            else:
                Image.fromarray(image).save(ds / folder / "img" / f"{stem}.png")
            Image.fromarray(mask * 255).save(ds / folder / "labelcol" / f"{stem}.png")
            k += 1
    return ds


def write_awesome_isic(root: Path, n: int = 10, size: int = SIZE) -> Path:
    """The ISIC 2018 task 1 training release as Awesome-U-Net reads it."""
    rng = np.random.default_rng(5)
    ds = root / "ISIC2018"
    (ds / "ISIC2018_Task1-2_Training_Input").mkdir(parents=True, exist_ok=True)
    (ds / "ISIC2018_Task1_Training_GroundTruth").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"ISIC_{i * 7:07d}"
        mask = square(i, size)
        Image.fromarray(rgb_for(mask, rng)).save(ds / "ISIC2018_Task1-2_Training_Input" / f"{stem}.jpg", quality=95)
        Image.fromarray(mask * 255).save(ds / "ISIC2018_Task1_Training_GroundTruth" / f"{stem}_segmentation.png")
    (ds / "ISIC2018_Task1-2_Training_Input" / "LICENSE.txt").write_text("synthetic")
    return ds


def write_msga(root: Path, subjects=None, n_slices: int = 4, size: int = SIZE) -> Path:
    """MSGA's CHAOS slice folders; ``subjects`` maps split -> subject numbers (default train 1, 2, 5; val 8; test 10)."""
    rng = np.random.default_rng(6)
    subjects = subjects or {"train": [1, 2, 5], "val": [8], "test": [10]}
    ds = root / "DataSet"
    for split, numbers in subjects.items():
        (ds / split / "Img").mkdir(parents=True, exist_ok=True)
        (ds / split / "GT").mkdir(parents=True, exist_ok=True)
        for x in numbers:
            for y in range(1, n_slices + 1):
                ids = square(x + y, size) + 2 * square(x + y + 2, size) * (y % 2)
                ids = np.minimum(ids, 4).astype(np.uint8)
                image = np.clip(rng.integers(0, 60, (size, size)) + 40 * ids + y, 0, 255).astype(np.uint8)
                Image.fromarray(image).save(ds / split / "Img" / f"Subj_{x}slice_{y}.png")
                Image.fromarray((ids * 63).astype(np.uint8)).save(ds / split / "GT" / f"Subj_{x}slice_{y}.png")
    return ds


def write_afma(root: Path, n_train: int = 6, n_val: int = 2, n_test: int = 2, channels: int = 3, size: int = SIZE,
               test_masks: bool = True) -> Path:
    """AFMA's LiTS ``.npy`` slices: channels-last float HU images, int masks 0/1/2 next to them."""
    rng = np.random.default_rng(7)
    ds = root / "LiTS"
    k = 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        (ds / split).mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            mask = square(k, size) + square(k + 1, size) * (k % 2)
            mask = np.minimum(mask, 2).astype(np.uint8)
            hu = rng.normal(-400.0, 300.0, (size, size, channels)) + 500.0 * (mask[..., None] > 0)
            np.save(ds / split / f"volume-{k // 3}_{k % 3}.npy", hu.astype(np.float32))
            if split != "test" or test_masks:
                np.save(ds / split / f"segmentation-{k // 3}_{k % 3}.npy", mask)
            k += 1
    return ds
