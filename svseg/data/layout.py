"""The on-disk layouts that the converters and the demo write, case by case.

* NIfTI: ``imagesTr/<case>.nii.gz`` and ``labelsTr/<case>.nii.gz`` for training and validation
  cases, ``imagesTs/`` and ``labelsTs/`` for test cases, with the case's affine (hence spacing).
* TransUNet: ``train_npz/<case>_sliceNNN.npz`` (2D ``image``/``label``, float32, (H, W) = (y, x))
  for training cases, ``test_vol_h5/<case>.npy.h5`` ((D, H, W) = (z, y, x) ``image``/``label``
  with ``affine``, ``spacing`` and ``axes`` attributes) for validation and test cases, and
  ``lists/{train.txt,val_vol.txt,test_vol.txt}``.

:class:`LayoutWriter` writes the files (atomically, :mod:`svseg.io`) and collects the
``training`` / ``validation`` / ``test`` datalist entries; :func:`relative_entry` turns an
entry's paths into the ``./``-relative form of a Decathlon ``dataset.json``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from svseg.data.readers import split_key
from svseg.io import PathLike, atomic_save_h5, atomic_save_nifti, atomic_save_npz, atomic_save_text

__all__ = ["LayoutWriter", "affine_spacing", "relative_entry"]


def affine_spacing(affine: Any) -> list[float]:
    """Voxel size of the three spatial axes implied by a 4x4 affine (column norms)."""
    return [float(v) for v in np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))]


def relative_entry(item: dict[str, Any], base: PathLike) -> dict[str, Any]:
    """A copy of a datalist entry whose ``image``/``label`` paths are ``./``-relative to ``base``
    when they lie inside it (absolute otherwise); a ``::key`` selector is kept."""
    base = Path(base).expanduser().absolute()
    new = dict(item)
    for key in ("image", "label"):
        if key in new and isinstance(new[key], (str, os.PathLike)):
            path, sel = split_key(os.fspath(new[key]))
            p_abs = Path(path).absolute()
            try:
                rel = "./" + p_abs.relative_to(base).as_posix()
            except ValueError:
                rel = str(p_abs)
            new[key] = f"{rel}::{sel}" if sel else rel
    return new


class LayoutWriter:
    """Write the cases of one data set under ``root`` in the NIfTI and/or TransUNet layouts.

    Args:
        root: output folder (usually the temporary folder of an :class:`svseg.io.AtomicDirectory`).
        nifti: write the NIfTI layout (the datalist entries then point at the NIfTI files).
        transunet: write the TransUNet layout (entries point at the npz/h5 files without NIfTI).
        h5_for_training: also write training cases as H5 volumes.

    Attributes:
        lists: split -> datalist entries ``{"image", "label", "case"[, "slice"]}`` (absolute paths).
    """

    def __init__(self, root: PathLike, nifti: bool = True, transunet: bool = True, h5_for_training: bool = False) -> None:
        self.root = Path(root)
        self.nifti = nifti
        self.transunet = transunet
        self.h5_for_training = h5_for_training
        self.lists: dict[str, list[dict[str, Any]]] = {"training": [], "validation": [], "test": []}
        self.train_slices: list[str] = []
        self.vol_lists: dict[str, list[str]] = {"validation": [], "test": []}

    def add(self, case: str, split: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> None:
        """Write one case (``image``/``label`` in NIfTI (x, y, z) order) of ``split``."""
        image = np.asarray(image, dtype=np.float32)
        label = np.asarray(label)
        if self.nifti:
            img_dir, lab_dir = ("imagesTs", "labelsTs") if split == "test" else ("imagesTr", "labelsTr")
            img_p = atomic_save_nifti(image, affine, self.root / img_dir / f"{case}.nii.gz")
            lab_p = atomic_save_nifti(label.astype(np.uint8), affine, self.root / lab_dir / f"{case}.nii.gz")
            self.lists[split].append({"image": str(img_p), "label": str(lab_p), "case": case})
        if not self.transunet:
            return
        img_t = np.ascontiguousarray(image.transpose(2, 1, 0))  # (z, y, x) = (D, H, W)
        lab_t = np.ascontiguousarray(label.transpose(2, 1, 0).astype(np.float32))
        if split == "training":
            for k in range(img_t.shape[0]):
                name = f"{case}_slice{k:03d}"
                f = atomic_save_npz({"image": img_t[k], "label": lab_t[k]}, self.root / "train_npz" / f"{name}.npz")
                self.train_slices.append(name)
                if not self.nifti:
                    self.lists["training"].append({"image": f"{f}::image", "label": f"{f}::label", "case": case, "slice": k})
        if split != "training" or self.h5_for_training:
            h5 = atomic_save_h5(
                {"image": img_t, "label": lab_t},
                self.root / "test_vol_h5" / f"{case}.npy.h5",
                attrs={"affine": affine, "spacing": np.asarray(affine_spacing(affine)), "axes": "zyx"},
            )
            if split != "training":
                self.vol_lists[split].append(case)
                if not self.nifti:
                    self.lists[split].append({"image": f"{h5}::image", "label": f"{h5}::label", "case": case})

    def write_lists(self) -> None:
        """Write ``lists/train.txt``, ``lists/val_vol.txt`` and ``lists/test_vol.txt`` (TransUNet layout)."""
        if not self.transunet:
            return
        for name, items in (("train.txt", self.train_slices), ("val_vol.txt", self.vol_lists["validation"]),
                            ("test_vol.txt", self.vol_lists["test"])):
            atomic_save_text("".join(f"{n}\n" for n in items), self.root / "lists" / name)

    def relative_lists(self) -> dict[str, list[dict[str, Any]]]:
        """:attr:`lists` with paths relative to ``root`` (as a ``dataset.json`` in ``root`` holds them)."""
        return {split: [relative_entry(e, self.root) for e in entries] for split, entries in self.lists.items()}
