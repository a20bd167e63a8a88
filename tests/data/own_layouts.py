"""Writers of users' own data sets in the three layouts svseg reads as they are.

* :func:`write_nnunet_3d`: the nnU-Net v2 raw layout; ``dataset.json`` is written by ``nnunetv2``'s own
  ``generate_dataset_json`` when nnunetv2 is installed (the reference writer), by the same fields otherwise.
* :func:`write_image_folder`: ``images/`` + ``masks/`` PNG pairs.
* :func:`write_nuclei`: REAL data: the DSB2018 nuclei image and its instance masks that ship inside the
  ``stardist`` wheel (``pip install --no-deps stardist``; never imported), tiled into non-overlapping 2D
  tiles with binary 0/255 masks. Nothing of it is copied into the repository.

Except :func:`write_nuclei`, the images are SYNTHETIC (noise plus bright blocks): they test formats, checks
and the plumbing, not accuracy.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from svseg.data.nuclei import nuclei_tiles, read_nuclei_sample


def stardist_images() -> Path:
    """``stardist/data/images`` of the installed wheel, or skip the test with the reason."""
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the stardist wheel is not installed (make test installs it: pip install --no-deps stardist)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "images"


def blob_case(rng: np.random.Generator, shape=(40, 36, 8), shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A SYNTHETIC volume with two bright blocks (labels 1 and 2) and its label map."""
    label = np.zeros(shape, np.uint8)
    label[8 + shift:20 + shift, 6:18, 1:7] = 1
    label[24:34, 20:32, 2:6] = 2
    image = (rng.normal(100.0, 15.0, shape) + 60.0 * label).astype(np.float32)
    return image, label


def write_nnunet_3d(root: Path, n_cases: int = 5, n_test: int = 1, channels: int = 1, shape=(40, 36, 8),
                    spacing=(0.9, 0.9, 2.5), name: str = "Dataset001_Blobs", modality: str = "MRI",
                    use_nnunetv2: bool = True) -> Path:
    """An nnU-Net v2 raw data set of SYNTHETIC blobs: ``imagesTr/<case>_000X.nii.gz``, ``labelsTr``, ``imagesTs``."""
    ds = root / name
    rng = np.random.default_rng(0)
    affine = np.diag([*spacing, 1.0])
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (ds / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_cases + n_test):
        image, label = blob_case(rng, shape, shift=i % 4)
        test = i >= n_cases
        case = f"blob_{i:03d}"
        for c in range(channels):
            nib.save(nib.Nifti1Image(image + 10 * c, affine), ds / ("imagesTs" if test else "imagesTr") / f"{case}_{c:04d}.nii.gz")
        if not test:
            nib.save(nib.Nifti1Image(label, affine), ds / "labelsTr" / f"{case}.nii.gz")
    channel_names = {c: modality for c in range(channels)}
    labels = {"background": 0, "core": 1, "rim": 2}
    if use_nnunetv2:
        generate = pytest.importorskip("nnunetv2.dataset_conversion.generate_dataset_json",
                                       reason="nnunetv2 is the reference writer of the layout (make test installs it)")
        generate.generate_dataset_json(str(ds), channel_names, labels, n_cases, ".nii.gz", dataset_name=name)
    else:
        doc = {"channel_names": {str(k): v for k, v in channel_names.items()}, "labels": labels,
               "numTraining": n_cases, "file_ending": ".nii.gz", "name": name}
        (ds / "dataset.json").write_text(json.dumps(doc, indent=1))
    return ds


def write_image_folder(root: Path, n: int = 4, size=(32, 40), rgb: bool = False, labels_json: bool = True,
                       binary_255: bool = True) -> Path:
    """An ``images/`` + ``masks/`` folder of SYNTHETIC 2D PNG images (a bright square per image)."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = np.zeros(size, np.uint8)
        mask[4 + i:14 + i, 6:20] = 1
        grey = np.clip(rng.normal(60, 10, size) + 120 * mask, 0, 255).astype(np.uint8)
        image = np.stack([grey, grey // 2, 255 - grey], -1) if rgb else grey
        Image.fromarray(image).save(root / "images" / f"img{i:02d}.png")
        Image.fromarray(mask * (255 if binary_255 else 1)).save(root / "masks" / f"img{i:02d}.png")
    if labels_json:
        (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "spot": 1}}))
    return root


def write_nuclei(root: Path, tile: int = 128) -> Path:
    """REAL small objects: the stardist DSB2018 nuclei image (512 x 512) in ``tile`` x ``tile`` tiles with
    binary 0/255 masks, as ``images/`` + ``masks/`` PNG pairs and a ``dataset.json`` naming the classes."""
    image, mask = read_nuclei_sample(stardist_images())
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for k, image_tile, mask_tile in nuclei_tiles(image, mask, tile):
        Image.fromarray(image_tile).save(root / "images" / f"tile{k:02d}.png")
        Image.fromarray((mask_tile * 255).astype(np.uint8)).save(root / "masks" / f"tile{k:02d}.png")
    (root / "dataset.json").write_text(json.dumps({"name": "DSB2018 nuclei (stardist wheel)",
                                                   "labels": {"background": 0, "nucleus": 1}}))
    return root
