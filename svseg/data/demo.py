"""The svseg demonstration data set: real brain MRI that ships inside nilearn, so it works offline.

Source: the ICBM 2009a non-linear symmetric MNI152 T1 template with its grey-matter (GM) and
white-matter (WM) probability maps, as packaged by nilearn (``load_mni152_template``,
``load_mni152_gm_template``, ``load_mni152_wm_template``; 197 x 233 x 189 voxels, 1 mm, all on the
same grid, checked at run time and resampled onto the T1 grid if a nilearn version differs).

Labels (3 classes, index = label id):

* 0 background, 1 grey matter, 2 white matter.
* Rule: a voxel is brain where ``gm + wm > 0.5``; a brain voxel is labelled ``1 + argmax(gm, wm)``
  (ties go to grey matter). Everything else (CSF, skull, air) is background.

Intensity: the T1 is clipped to ``[p0, p99.5]``, the 0th and 99.5th percentiles of its non-zero
voxels, and scaled to ``[0, 1]`` (background stays 0), so the image lies in ``[0, 1]`` like the
preprocessed Synapse CT (which TransUNet clips to a HU window and scales to ``[0, 1]``); this is
the ``minmax`` rule of :mod:`svseg.data.transforms` with ``nonzero=True``.

Held-out data (one subject, so the split is by axial position, never by voxel sampling):
along the axial (z, inferior to superior) axis, within the slices that contain brain,

* two **test** slabs of 16 slices centred at 35 % and 70 % of the brain's z extent,
* one **validation** slab of 8 slices centred at 52 %,
* a gap of 3 slices on each side of every held-out slab that belongs to no split,
* all remaining slices (plus 2 slices of margin above and below the brain) form the
  **training** volumes, one per contiguous run of slices.

So no slice of a held-out slab, nor its direct neighbours, is ever seen in training. This is a
demonstration set (one template brain, easy classes), **not a benchmark**.

``tiny=True`` builds the same set from the volume downsampled to 4 mm isotropic (49 x 58 x 47
voxels; GM/WM maps are resampled with linear interpolation and thresholded afterwards), with slab
sizes and gaps divided by 4 (test 4 slices, validation 2, gap 1): small volumes that a network
can still fit in a unit test.

Layout written under the output folder (both views hold the same voxels):

* NIfTI + Decathlon datalist: ``imagesTr/<case>.nii.gz`` and ``labelsTr/<case>.nii.gz`` for
  training and validation cases, ``imagesTs/`` and ``labelsTs/`` for the test cases, and
  ``dataset.json`` with ``training`` / ``validation`` / ``test`` lists of ``{"image", "label",
  "case"}`` (paths relative to the folder, as MONAI's ``load_decathlon_datalist`` expects). Each
  volume keeps its true MNI affine (the slab's z offset is folded into the translation).
* TransUNet Synapse layout: ``train_npz/<case>_sliceNNN.npz`` (keys ``image``, ``label``; 2D
  float32 arrays of shape (H, W) = (y, x)), ``test_vol_h5/<case>.npy.h5`` (keys ``image``,
  ``label``, float32 arrays (D, H, W) = (z, y, x), attributes ``affine`` and ``spacing`` (x, y, z,
  mm)), for the validation and test cases, and ``lists/train.txt``, ``lists/val_vol.txt``,
  ``lists/test_vol.txt``.
* ``svseg_demo_stamp.json``: version and parameters; a later call with the same parameters
  reuses the folder instead of rebuilding it.

The axis convention between the views: an H5/npz array is the NIfTI array transposed, ``h5 =
nifti.transpose(2, 1, 0)`` (the order SimpleITK's ``GetArrayFromImage`` gives), and
:class:`svseg.data.readers.H5Reader` undoes this so all views load to the same MONAI array.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from svseg.data.layout import LayoutWriter, affine_spacing
from svseg.data.transforms import percentile_minmax
from svseg.io import AtomicDirectory, atomic_save_json

__all__ = [
    "DEMO_VERSION",
    "DEMO_CLASS_NAMES",
    "default_data_dir",
    "default_demo_dir",
    "demo_parameters",
    "load_mni152_volumes",
    "make_demo_volume",
    "demo_splits",
    "prepare_demo",
    "is_prepared",
]

logger = logging.getLogger(__name__)

DEMO_VERSION = 3  # 3: dataset.json records "prepared": true (the intensity rule is applied)
DEMO_CLASS_NAMES = ("background", "grey matter", "white matter")
STAMP_NAME = "svseg_demo_stamp.json"


def default_data_dir() -> Path:
    """The svseg data root: ``$SVSEG_DATA_DIR`` or ``~/.cache/svseg``."""
    root = os.environ.get("SVSEG_DATA_DIR")
    return Path(root).expanduser() if root else Path("~/.cache/svseg").expanduser()


def default_demo_dir(tiny: bool = False) -> Path:
    """Default folder of the demo set: ``<data root>/demo`` (``demo_tiny`` for the tiny set)."""
    return default_data_dir() / ("demo_tiny" if tiny else "demo")


def demo_parameters(tiny: bool = False) -> dict[str, Any]:
    """The parameters that define the demo set (written to the stamp file)."""
    ds = 4 if tiny else 1
    return {
        "version": DEMO_VERSION,
        "tiny": bool(tiny),
        "downsample": ds,
        "brain_threshold": 0.5,
        "intensity": {"rule": "minmax", "lower_percentile": 0.0, "upper_percentile": 99.5, "nonzero": True},
        "test_centres": [0.35, 0.70],
        "test_thickness": max(3, round(16 / ds)),
        "val_centres": [0.52],
        "val_thickness": max(2, round(8 / ds)),
        "gap": max(1, round(3 / ds)),
        "margin": max(1, round(2 / ds)),
        "axis": 2,
    }


def load_mni152_volumes() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load the nilearn MNI152 2009a T1, GM and WM maps on the T1 grid (1 mm).

    Returns:
        ``(t1, gm, wm, affine)``: three float32 arrays (197, 233, 189) and the 4x4 affine.
    """
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=1)
    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm_img = datasets.load_mni152_wm_template(resolution=1)
    maps = []
    for img in (gm_img, wm_img):
        if img.shape != t1_img.shape or not np.allclose(img.affine, t1_img.affine):
            from nilearn.image import resample_to_img

            img = resample_to_img(img, t1_img, interpolation="continuous")
        maps.append(np.asarray(img.get_fdata(), dtype=np.float32))
    t1 = np.asarray(t1_img.get_fdata(), dtype=np.float32)
    return t1, maps[0], maps[1], np.asarray(t1_img.affine, dtype=np.float64)


def _downsample(arr: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear resampling by 1/factor on a corner-aligned grid; returns the array and the scale."""
    from scipy import ndimage

    out_shape = [max(2, int(round(s / factor))) for s in arr.shape]
    zoom = [o / s for o, s in zip(out_shape, arr.shape)]
    out = ndimage.zoom(arr, zoom, order=1, grid_mode=False)
    scale = np.array([(s - 1) / (o - 1) for s, o in zip(arr.shape, out.shape)])
    return out.astype(np.float32), scale


def make_demo_volume(tiny: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build the full demo image, label map and affine (before the split).

    Returns:
        ``(image, label, affine)``: float32 image in [0, 1], uint8 labels in {0, 1, 2}, 4x4 affine.
    """
    params = demo_parameters(tiny)
    t1, gm, wm, affine = load_mni152_volumes()
    ds = params["downsample"]
    if ds > 1:
        t1, scale = _downsample(t1, ds)
        gm, _ = _downsample(gm, ds)
        wm, _ = _downsample(wm, ds)
        affine = affine @ np.diag([*scale, 1.0])
    brain = (gm + wm) > params["brain_threshold"]
    label = np.where(brain, 1 + np.argmax(np.stack([gm, wm]), axis=0), 0).astype(np.uint8)
    image = percentile_minmax(t1, 0.0, 99.5, nonzero=True)
    return image, label, affine


def _slab(centre: float, thickness: int, z0: int, z1: int) -> tuple[int, int]:
    mid = z0 + centre * (z1 - z0)
    start = int(round(mid - thickness / 2))
    return start, start + thickness  # half open


def demo_splits(label: np.ndarray, tiny: bool = False) -> dict[str, list[tuple[int, int]]]:
    """Axial slab ranges (half-open ``[start, stop)`` along z) of every split.

    Raises:
        ValueError: when the slabs and gaps overlap (which would leak held-out slices).
    """
    p = demo_parameters(tiny)
    zs = np.where(label.any(axis=(0, 1)))[0]
    z0, z1 = int(zs.min()), int(zs.max())
    held = {
        "test": [_slab(c, p["test_thickness"], z0, z1) for c in p["test_centres"]],
        "validation": [_slab(c, p["val_thickness"], z0, z1) for c in p["val_centres"]],
    }
    lo, hi = max(0, z0 - p["margin"]), min(label.shape[2], z1 + 1 + p["margin"])
    excluded = np.zeros(label.shape[2], dtype=bool)
    for slabs in held.values():
        for a, b in slabs:
            region = slice(max(0, a - p["gap"]), min(label.shape[2], b + p["gap"]))
            if excluded[region].any():
                raise ValueError(f"demo held-out slabs overlap (slab {a}:{b}); the split parameters are inconsistent.")
            excluded[region] = True
    training = []
    z = lo
    while z < hi:
        if excluded[z]:
            z += 1
            continue
        start = z
        while z < hi and not excluded[z]:
            z += 1
        training.append((start, z))
    return {"training": training, **held}


def _stamp_matches(root: Path, params: dict[str, Any]) -> bool:
    stamp = root / STAMP_NAME
    if not stamp.is_file() or not (root / "dataset.json").is_file():
        return False
    try:
        return json.loads(stamp.read_text())["parameters"] == params
    except (ValueError, KeyError, OSError):
        return False


def is_prepared(output_dir: str | os.PathLike | None = None, tiny: bool = False) -> bool:
    """Whether a complete demo set with the current parameters exists in ``output_dir``."""
    root = Path(output_dir).expanduser() if output_dir is not None else default_demo_dir(tiny)
    return _stamp_matches(root, demo_parameters(tiny))


def _shift_affine(affine: np.ndarray, z_start: int) -> np.ndarray:
    shift = np.eye(4)
    shift[2, 3] = z_start
    return affine @ shift


def prepare_demo(output_dir: str | os.PathLike | None = None, tiny: bool = False, force: bool = False) -> Path:
    """Build (or reuse) the demo data set and return its folder.

    Args:
        output_dir: destination folder; default ``$SVSEG_DATA_DIR/demo`` (``demo_tiny`` with
            ``tiny``), with ``SVSEG_DATA_DIR`` defaulting to ``~/.cache/svseg``.
        tiny: build the 4 mm version for unit tests.
        force: rebuild even if a complete set with the same parameters exists.

    Returns:
        The absolute path of the data folder (holds ``dataset.json``).

    The whole tree is built in a temporary sibling folder and renamed into place, so a failed
    or interrupted run leaves no partial data set behind.
    """
    root = (Path(output_dir).expanduser() if output_dir is not None else default_demo_dir(tiny)).absolute()
    params = demo_parameters(tiny)
    if not force and _stamp_matches(root, params):
        logger.info("demo data already prepared in %s", root)
        return root
    if root.exists() and not force and any(root.iterdir()) and not (root / STAMP_NAME).is_file():
        raise FileExistsError(
            f"output_dir {root} exists, is not empty and holds no svseg demo stamp; choose another folder or pass force=True."
        )
    logger.info("preparing the svseg demo data in %s", root)
    image, label, affine = make_demo_volume(tiny)
    splits = demo_splits(label, tiny)
    prefixes = {"training": "demo_tr", "validation": "demo_val", "test": "demo_ts"}
    datalist: dict[str, Any] = {
        "name": "svseg-demo" + ("-tiny" if tiny else ""),
        "description": "Demonstration set from the MNI152 2009a T1 template (nilearn): background / grey matter / "
        "white matter, held-out axial slabs as test cases. A demonstration, not a benchmark.",
        "reference": "ICBM 2009a nonlinear symmetric MNI152 template (Fonov et al., NeuroImage 2011), as shipped in nilearn",
        "tensorImageSize": "3D",
        "modality": {"0": "T1w MRI"},
        "labels": {str(i): n for i, n in enumerate(DEMO_CLASS_NAMES)},
        "training": [],
        "validation": [],
        "test": [],
        "svseg": {"dataset": "demo", "prepared": True, "version": DEMO_VERSION, "parameters": params, "spacing": affine_spacing(affine), "slabs": {}},
    }
    keep = (lambda: _stamp_matches(root, params)) if not force else None
    with AtomicDirectory(root, overwrite=True, keep_existing=keep) as tmp:
        writer = LayoutWriter(tmp)
        for split, slabs in splits.items():
            for i, (a, b) in enumerate(slabs):
                case = f"{prefixes[split]}{i}"
                writer.add(case, split, image[:, :, a:b], label[:, :, a:b], _shift_affine(affine, a))
                datalist["svseg"]["slabs"][case] = [int(a), int(b)]
        writer.write_lists()
        datalist.update(writer.relative_lists())
        datalist["numTraining"] = len(datalist["training"])
        datalist["numTest"] = len(datalist["test"])
        atomic_save_json(datalist, tmp / "dataset.json")
        atomic_save_json({"parameters": params, "splits": {k: [list(s) for s in v] for k, v in splits.items()}}, tmp / STAMP_NAME)
    logger.info("demo data ready in %s", root)
    return root
