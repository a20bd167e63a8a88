"""Writers of SYNTHETIC data sets in exactly the published download layouts (for the converter tests).

Synapse, LiTS and ACDC cannot be downloaded here, so these functions write tiny random volumes
with the published file names, folder structure, dtypes and label sets:

* BTCV / Synapse: ``img/imgXXXX.nii.gz`` (int16 HU) and ``label/labelXXXX.nii.gz`` (13 labels).
* LiTS: ``volume-N.nii`` (int16 HU) and ``segmentation-N.nii`` (0 background, 1 liver, 2 tumour),
  split across ``Training Batch 1`` / ``Training Batch 2`` as released.
* ACDC: ``patientXXX/patientXXX_frameYY.nii.gz`` + ``_gt`` (1 RV, 2 Myo, 3 LV), ``Info.cfg``
  with ``ED`` / ``ES`` frames, and the unused ``patientXXX_4d.nii.gz``.

The images are noise, not anatomy: they test formats, splits and round trips only.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

SYNAPSE_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)


def save(path: Path, array: np.ndarray, affine: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(array, affine)
    img.set_data_dtype(array.dtype)
    nib.save(img, str(path))
    return path


def _labels(rng, shape, n_labels: int) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.uint8)
    flat = lab.reshape(-1)
    # every label id appears at least once, the rest is background or random ids
    idx = rng.permutation(flat.size)
    flat[idx[:n_labels]] = np.arange(1, n_labels + 1)
    extra = idx[n_labels : n_labels + flat.size // 3]
    flat[extra] = rng.integers(1, n_labels + 1, size=extra.size)
    return lab


def affine_for(spacing=(0.8, 0.8, 3.0), flip_x: bool = True, origin=(100.0, -50.0, 20.0)) -> np.ndarray:
    aff = np.diag([*spacing, 1.0]).astype(np.float64)
    if flip_x:
        aff[0, 0] = -aff[0, 0]
    aff[:3, 3] = origin
    return aff


def write_btcv(root: Path, ids=SYNAPSE_IDS, shape=(10, 12, 3), seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Write a synthetic BTCV ``RawData/Training`` folder; returns case -> (image, label, affine)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in ids:
        aff = affine_for((0.7 + 0.01 * i, 0.7 + 0.01 * i, 2.5))
        img = rng.integers(-1024, 1500, size=shape).astype(np.int16)
        lab = _labels(rng, shape, 13)
        save(root / "img" / f"img{i:04d}.nii.gz", img, aff)
        save(root / "label" / f"label{i:04d}.nii.gz", lab, aff)
        out[f"case{i:04d}"] = (img, lab, aff)
    return out


def write_lits(root: Path, ids=range(131), shape=(8, 9, 3), seed: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Write a synthetic LiTS training release; returns case -> (image, label, affine)."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in ids:
        batch = root / ("Training Batch 1" if i < 28 else "Training Batch 2")
        aff = affine_for((0.75, 0.75, 1.0 + (i % 3)), flip_x=False)
        img = rng.integers(-1024, 1200, size=shape).astype(np.int16)
        lab = _labels(rng, shape, 2)
        save(batch / f"volume-{i}.nii", img, aff)
        save(batch / f"segmentation-{i}.nii", lab, aff)
        out[f"volume-{i}"] = (img, lab, aff)
    return out


def write_acdc(root: Path, ids=range(1, 101), shape=(9, 8, 3), seed: int = 2) -> dict[str, dict]:
    """Write a synthetic ACDC ``training`` folder; returns patient -> {"ED": (img, lab, aff, frame), "ES": ...}."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in ids:
        p = f"patient{i:03d}"
        folder = root / p
        folder.mkdir(parents=True, exist_ok=True)
        ed, es = 1, 5 + i % 10
        (folder / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: NOR\nHeight: 170.0\nNbFrame: 20\nWeight: 70.0\n")
        aff = affine_for((1.4, 1.4, 10.0), flip_x=False)
        out[p] = {}
        frames = []
        for phase, frame in (("ED", ed), ("ES", es)):
            img = rng.gamma(2.0, 60.0, size=shape).astype(np.float32)
            lab = _labels(rng, shape, 3)
            save(folder / f"{p}_frame{frame:02d}.nii.gz", img, aff)
            save(folder / f"{p}_frame{frame:02d}_gt.nii.gz", lab, aff)
            out[p][phase] = (img, lab, aff, frame)
            frames.append(img)
        save(folder / f"{p}_4d.nii.gz", np.stack(frames, -1), aff)
    return out


def write_mtunet_acdc(root: Path, splits: dict[str, tuple[int, ...]], depth: int = 11, shape=(7, 6), seed: int = 3) -> dict:
    """Write a synthetic MT-UNet preprocessed ACDC folder (``train/``, ``valid/``: 2D slices
    ``case_XXX_sliceED_N.npz``; ``test/``: volumes ``case_XXX_volume_ED.npz`` (D, H, W); keys
    ``img`` and ``label``; ``lists_ACDC/``). Returns patient -> phase -> (img (D, H, W), label)."""
    rng = np.random.default_rng(seed)
    out: dict = {}
    lists = {"train": [], "valid": [], "test": []}
    for folder, ids in splits.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in ids:
            out[f"patient{i:03d}"] = {}
            for phase in ("ED", "ES"):
                img = rng.random((depth, *shape)).astype(np.float32)
                lab = _labels(rng, (depth, *shape), 3).astype(np.float32)
                out[f"patient{i:03d}"][phase] = (img, lab)
                if folder == "test":
                    name = f"case_{i:03d}_volume_{phase}.npz"
                    np.savez(root / folder / name, img=img, label=lab)
                    lists[folder].append(name)
                else:
                    for k in range(depth):
                        name = f"case_{i:03d}_slice{phase}_{k}.npz"
                        np.savez(root / folder / name, img=img[k], label=lab[k])
                        lists[folder].append(name)
    (root / "lists_ACDC").mkdir(exist_ok=True)
    for folder, names in lists.items():
        (root / "lists_ACDC" / f"{folder}.txt").write_text("".join(f"{n}\n" for n in sorted(names)))
    return out
