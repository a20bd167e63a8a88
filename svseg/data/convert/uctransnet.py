"""The UCTransNet / SA2-Net MoNuSeg and GlaS layout -> svseg's nnU-Net v2 raw data set.

The layout (McGregorWwww/UCTransNet ``README.md`` and ``datasets/MoNuSeg/``; mustansarfiaz/SA2-Net
``MoNuSeg_GLaS/Config.py``)::

    <root>/Train_Folder/img/<stem>.<png|tif|jpg|bmp>
    <root>/Train_Folder/labelcol/<stem>.png
    <root>/Val_Folder/{img,labelcol}/
    <root>/Test_Folder/{img,labelcol}/

(the published MoNuSeg has PNG training and TIFF test images). ``Load_Dataset.py: ImageToImage2D`` reads the
image with ``cv2.imread`` (3 channels) and the mask at ``labelcol/<image name minus its 3-letter ending>png``
as grey, then sets every value > 0 to 1. svseg writes RGB ``<case>_0000.png`` (channel names R, G, B) and 0/1
masks; it accepts masks holding 0/1 or 0/255 and refuses other values (an instance-labelled or lossy mask)
unless ``binarize=True`` asks for the authors' ``> 0`` rule.

Split (``split=``):

* ``"kfold"`` (default, SA2-Net ``MoNuSeg_GLaS/train_model.py``): ``KFold(n_splits=5, shuffle=True,
  random_state=999)`` over the ``Train_Folder/img`` files; SA2-Net lists them with ``os.listdir`` (file-system
  order, not reproducible), svseg with the names sorted. ``Val_Folder`` is not read by SA2-Net and is left out.
* ``"folders"`` (UCTransNet ``train_model.py``): one fold, ``Train_Folder`` to train, ``Val_Folder`` to validate.

``Test_Folder`` becomes ``imagesTs``/``labelsTs`` in both cases.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from svseg.data.convert.common import ConversionError, output_folder, with_progress
from svseg.data.convert.paper_common import (
    case_id,
    filter_cases,
    image_files,
    kfold_splits,
    nnunet_output,
    read_mask_values,
    read_rgb,
    require_layout,
)
from svseg.io import PathLike

__all__ = ["convert_uctransnet", "binary_mask"]

log = logging.getLogger(__name__)

_SPLITS = ("kfold", "folders")


def binary_mask(path: Path, binarize: bool) -> np.ndarray:
    """A 0/1 uint8 mask from a labelcol file: 0/1 or 0/255 values, or any value > 0 with ``binarize``."""
    values = read_mask_values(path)
    if binarize:
        return (values > 0).astype(np.uint8)
    found = set(np.unique(values).tolist())
    if found <= {0, 1}:
        return values.astype(np.uint8)
    if found <= {0, 255}:
        return (values == 255).astype(np.uint8)
    raise ConversionError(f"{path}: mask values {sorted(found)[:8]} are not a binary 0/1 or 0/255 mask "
                          "(the authors' loader sets every value > 0 to 1; pass binarize=True to do the same).")


def collect(folder: Path, split_dir: str) -> dict[str, tuple[Path, Path]]:
    """``case -> (image, mask)`` of one ``*_Folder``; an image without its ``labelcol`` mask is an error."""
    base = folder / split_dir
    out: dict[str, tuple[Path, Path]] = {}
    for path in image_files(base / "img"):
        mask = base / "labelcol" / f"{path.stem}.png"
        if not mask.is_file():
            raise FileNotFoundError(f"{mask}: mask of {path} not found.")
        out[case_id(path.stem)] = (path, mask)
    return out


def convert_uctransnet(source: PathLike, output: PathLike | None = None, split: str = "kfold", n_folds: int = 5,
                       seed: int = 999, binarize: bool = False, overwrite: bool = False,
                       cases: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Convert a ``MoNuSeg`` or ``GlaS`` folder of the UCTransNet layout; returns the output folder.

    Args:
        source: the folder holding ``Train_Folder``, ``Val_Folder``, ``Test_Folder``.
        output: destination (default ``$SVSEG_DATA_DIR/uctransnet_<folder name>``).
        split: ``"kfold"`` (SA2-Net: ``n_folds`` folds, ``seed``) or ``"folders"`` (UCTransNet's Val_Folder).
        binarize: the authors' ``mask > 0`` rule instead of refusing a non-binary mask.
        cases: convert only these case ids. progress: a progress bar.
    """
    folder = require_layout(source, "uctransnet")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}.")
    train = collect(folder, "Train_Folder")
    val = collect(folder, "Val_Folder") if split == "folders" else {}
    if split == "folders" and not val:
        raise ConversionError(f"{folder / 'Val_Folder'}: split='folders' needs Val_Folder/img images.")
    test = collect(folder, "Test_Folder") if (folder / "Test_Folder").is_dir() else {}
    seen: dict[str, str] = {}
    for tag, group in (("Train_Folder", train), ("Val_Folder", val), ("Test_Folder", test)):
        for c, (path, _) in group.items():
            if c in seen:
                raise ConversionError(f"{path}: case id {c!r} is also in {seen[c]}.")
            seen[c] = tag
    chosen = filter_cases({**train, **val, **test}, cases, folder)
    name = f"uctransnet_{case_id(folder.name).lower()}"
    out = output_folder(name, output, overwrite)
    with nnunet_output(out, overwrite, ".png") as writer:
        for cid in with_progress(sorted(chosen), "UCTransNet layout", progress):
            image_path, mask_path = chosen[cid]
            image = read_rgb(image_path)
            label = binary_mask(mask_path, binarize)
            if label.shape != image.shape[:2]:
                raise ConversionError(f"{mask_path}: mask shape {label.shape} differs from the image "
                                      f"{image_path.name} shape {image.shape[:2]}.")
            writer.add_case(cid, [image], label, cid in test, [image_path, mask_path])
        if split == "kfold":
            splits = kfold_splits([c for c in sorted(train) if c in chosen], n_folds, seed)
            text = (f"Train_Folder -> imagesTr, {n_folds}-fold CV as SA2-Net: KFold(shuffle=True, random_state={seed}) "
                    "over the sorted Train_Folder/img names; Val_Folder not used (SA2-Net does not read it); "
                    "Test_Folder -> imagesTs")
        else:
            splits = [{"train": [c for c in sorted(train) if c in chosen], "val": [c for c in sorted(val) if c in chosen]}]
            text = "Train_Folder = train, Val_Folder = validation (UCTransNet), Test_Folder -> imagesTs"
        writer.finish(name, {"0": "R", "1": "G", "2": "B"}, ["background", "foreground"],
                      {"source_layout": "uctransnet", "paper": "UCTransNet (Wang et al., AAAI 2022) / SA2-Net "
                       "(Fiaz et al., BMVC 2023)", "protocol": "uctransnet", "split": text},
                      splits, {"split": split, "n_folds": n_folds, "seed": seed, "binarize": binarize})
        log.info("UCTransNet layout: %d training, %d test images", len(writer.training), len(writer.test))
    return out
