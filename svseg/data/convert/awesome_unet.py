"""The Awesome-U-Net ISIC 2018 layout (NITR098/Awesome-U-Net) -> svseg's nnU-Net v2 raw data set.

The layout (``datasets/README.md``, ``datasets/prepare_isic.ipynb``, ``datasets/isic.py: ISIC2018Dataset``)::

    <root>/ISIC2018_Task1-2_Training_Input/ISIC_<id>.jpg
    <root>/ISIC2018_Task1_Training_GroundTruth/ISIC_<id>_segmentation.png

Images are read as RGB (``read_image(..., ImageReadMode.RGB)``) and written as one RGB ``<case>_0000.png``;
masks are read as grey and min-max scaled by the authors, i.e. 0/255 -> 0/1: svseg accepts 0/255 (or 0/1)
masks and refuses any other value. Other files in the folders (the ISIC ``LICENSE.txt``,
``ATTRIBUTION.txt``) are ignored.

Split (``datasets/isic.py: ISIC2018DatasetFast``): the first 1815 images train, the next 259 validate, the
last 520 (of 2594) test, in the order of ``glob`` (file-system order, not reproducible). svseg takes the
images sorted by id and the same proportions (exactly 1815 / 259 / 520 for the 2594 images of the release):
train + validation -> ``imagesTr`` with the one fold in ``splits_final.json``, test -> ``imagesTs``/``labelsTs``.

SegPC 2021 (the repository's second set) is **not** converted: ``datasets/prepare_segpc.ipynb`` crops every
annotated cell instance at scale 2.5, adds the nucleus as an extra input channel and resizes to 224, a
preprocessing pipeline rather than a folder layout.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from svseg.data.convert.common import ConversionError, output_folder, with_progress
from svseg.data.convert.paper_common import filter_cases, image_files, nnunet_output, read_mask_values, read_rgb, require_layout
from svseg.io import PathLike

__all__ = ["ISIC_SPLIT", "convert_awesome_unet", "isic_split_sizes"]

log = logging.getLogger(__name__)

#: Awesome-U-Net's ISIC 2018 split sizes (train, validation, test) of the 2594 training images
ISIC_SPLIT = (1815, 259, 520)
_INPUT = "ISIC2018_Task1-2_Training_Input"
_TRUTH = "ISIC2018_Task1_Training_GroundTruth"


def isic_split_sizes(n: int) -> tuple[int, int, int]:
    """Train / validation / test counts for ``n`` images in Awesome-U-Net's proportions (1815 / 259 / 520)."""
    total = sum(ISIC_SPLIT)
    n_train = int(round(n * ISIC_SPLIT[0] / total))
    n_val = max(1, int(round(n * ISIC_SPLIT[1] / total)))
    if n_train < 1 or n - n_train - n_val < 0:
        raise ConversionError(f"{n} images are too few for Awesome-U-Net's train / validation / test split.")
    return n_train, n_val, n - n_train - n_val


def lesion_mask(path: Path) -> np.ndarray:
    """A 0/1 uint8 mask from an ISIC ground-truth file (0/255 or 0/1); other values are refused."""
    values = read_mask_values(path)
    found = set(np.unique(values).tolist())
    if found <= {0, 255}:
        return (values == 255).astype(np.uint8)
    if found <= {0, 1}:
        return values.astype(np.uint8)
    raise ConversionError(f"{path}: mask values {sorted(found)[:8]} are not a binary 0/255 lesion mask.")


def convert_awesome_unet(source: PathLike, output: PathLike | None = None, overwrite: bool = False,
                         cases: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Convert the ISIC 2018 task 1 training release in Awesome-U-Net's layout; returns the output folder.

    Args:
        source: the folder holding ``ISIC2018_Task1-2_Training_Input`` and ``ISIC2018_Task1_Training_GroundTruth``.
        output: destination (default ``$SVSEG_DATA_DIR/awesome_unet_isic2018``).
        cases: convert only these ids (``ISIC_0000000``); the split is made before the selection.
    """
    folder = require_layout(source, "awesome_unet")
    found = {}
    for path in image_files(folder / _INPUT, (".jpg",)):
        if not path.stem.startswith("ISIC_"):
            raise ConversionError(f"{path}: ISIC images are named ISIC_<id>.jpg.")
        mask = folder / _TRUTH / f"{path.stem}_segmentation.png"
        if not mask.is_file():
            raise FileNotFoundError(f"{mask}: mask of {path} not found.")
        found[path.stem] = (path, mask)
    if not found:
        raise ConversionError(f"{folder / _INPUT}: holds no ISIC_<id>.jpg image.")
    order = sorted(found)
    n_train, n_val, n_test = isic_split_sizes(len(order))
    role = {c: ("train" if i < n_train else "val" if i < n_train + n_val else "test") for i, c in enumerate(order)}
    chosen = filter_cases(found, cases, folder)
    name = "awesome_unet_isic2018"
    out = output_folder(name, output, overwrite)
    with nnunet_output(out, overwrite, ".png") as writer:
        for cid in with_progress(sorted(chosen), "ISIC 2018", progress):
            image_path, mask_path = chosen[cid]
            image = read_rgb(image_path)
            label = lesion_mask(mask_path)
            if label.shape != image.shape[:2]:
                raise ConversionError(f"{mask_path}: mask shape {label.shape} differs from the image "
                                      f"{image_path.name} shape {image.shape[:2]}.")
            writer.add_case(cid, [image], label, role[cid] == "test", [image_path, mask_path])
        splits = [{"train": [c for c in order if c in chosen and role[c] == "train"],
                   "val": [c for c in order if c in chosen and role[c] == "val"]}]
        text = (f"Awesome-U-Net (datasets/isic.py): images sorted by id, the first {n_train} train, the next {n_val} "
                f"validate, the last {n_test} test (1815 / 259 / 520 of 2594 in the paper; glob order there)")
        writer.finish(name, {"0": "R", "1": "G", "2": "B"}, ["background", "lesion"],
                      {"source_layout": "awesome_unet", "paper": "Awesome-U-Net (Azad et al., 2022), ISIC 2018",
                       "protocol": "awesome_unet", "split": text},
                      splits, {"sizes": [n_train, n_val, n_test]})
        log.info("ISIC 2018: %d training, %d test images", len(writer.training), len(writer.test))
    return out
