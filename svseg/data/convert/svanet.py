"""SvANet's published data layout (anthonyweidai/SvANet) -> svseg's nnU-Net v2 raw data set.

The layout (``readme/DATA.md``; ``lib/utils/path_manage/utils.py: getImgPath`` mode 4 reads ``train/*`` and
``val/*`` or ``test/*``; ``lib/data/baseDataset.py: getMask`` finds the mask at ``mask/<stem>.png``)::

    dataset/<Set>/train/<stem>.jpg
    dataset/<Set>/val/<stem>.jpg        (or test/)
    dataset/<Set>/mask/<stem>.png

Sets and their classes (``lib/utils/variables/defaultVar.py: CLASS_NAMES``): FIVES, ISIC2018, PolypGen,
ATLAS, KiTS23, TissueNet, SpermHealth. ATLAS and KiTS23 are 3D scans sliced by ``tools/niftiFileExtractor.py``
into ``im<N>.nii_<slice>.jpg`` / ``case_<NNNNN>_<slice>.jpg`` with palette masks whose index is the class id.

* Images are read as RGB (``lib/utils/image/utils.py: readImagePil`` converts to RGB) and written as one RGB
  ``<case>_0000.png`` (channel names R, G, B). Masks (``readMaskPil``: mode L or P) must hold class ids
  ``0..K``; a set with one foreground class may use 0/255 (255 -> 1). Any other value is refused.
* The ``val/`` or ``test/`` folder is what SvANet reports its metrics on: it becomes ``imagesTs``/``labelsTs``.
* SvANet trains 3 repeats (``main.py``: ``num_repeat`` runs over the one folder split, each with a new random
  seed) and selects the best epoch on that folder. svseg keeps the test folder for testing and writes, in
  ``splits_final.json``, **3 seeded repeats** of a random 80/20 train/validation hold-out of ``train/``
  (repeat r: ``np.random.RandomState(seed + r)``, seed 999 = SvANet's ``seedSetting`` default). For the sliced
  3D sets (ATLAS, KiTS23) the hold-out draws whole scans (``im<N>.nii``, ``case_<NNNNN>``), never single
  slices, so no scan is on both sides.
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
    nnunet_output,
    read_mask_values,
    read_rgb,
    repeat_splits,
    require_layout,
)
from svseg.io import PathLike

__all__ = ["SVANET_SETS", "SLICED_SETS", "convert_svanet"]

log = logging.getLogger(__name__)

#: SvANet's data sets and their foreground classes (lib/utils/variables/defaultVar.py: CLASS_NAMES)
SVANET_SETS: dict[str, list[str]] = {
    "FIVES": ["amd", "dr", "glaucoma", "health"],
    "ISIC2018": ["symptoms"],
    "PolypGen": ["symptoms"],
    "ATLAS": ["liver", "tumour"],
    "KiTS23": ["kidney", "tumor", "cyst"],
    "TissueNet": ["cell", "nucleus"],
    "SpermHealth": ["normal", "abnormal"],
}
#: the sets sliced from 3D scans by tools/niftiFileExtractor.py (<scan>_<slice> names)
SLICED_SETS = ("ATLAS", "KiTS23")


def set_name(folder: Path, subset: str | None) -> str:
    """The SvANet set of ``folder``: ``subset`` or the folder's name, matched without letter case."""
    wanted = (subset or folder.name).lower()
    for name in SVANET_SETS:
        if name.lower() == wanted:
            return name
    raise ConversionError(f"{folder}: {subset or folder.name!r} is not one of SvANet's sets {sorted(SVANET_SETS)}; "
                          "name the folder after its set or pass subset=<set>.")


def mask_ids(path: Path, n_classes: int) -> np.ndarray:
    """A SvANet mask as class ids (uint8); values outside ``0..n_classes-1`` are refused, naming the file."""
    values = read_mask_values(path)
    found = set(np.unique(values).tolist())
    if n_classes == 2 and found <= {0, 255}:
        return (values == 255).astype(np.uint8)
    bad = sorted(found - set(range(n_classes)))
    if bad:
        extra = " or 0/255 for a binary mask" if n_classes == 2 else ""
        raise ConversionError(f"{path}: mask values {bad[:8]} are not class ids 0..{n_classes - 1}{extra}.")
    return values.astype(np.uint8)


def scan_of(stem: str, subset: str) -> str:
    """The scan a slice comes from (``im1.nii_12`` -> ``im1.nii``) for the sliced sets, else the image itself."""
    return stem.rsplit("_", 1)[0] if subset in SLICED_SETS and "_" in stem else stem


def convert_svanet(source: PathLike, output: PathLike | None = None, subset: str | None = None, seed: int = 999,
                   repeats: int = 3, val_fraction: float = 0.2, overwrite: bool = False,
                   cases: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Convert ``dataset/<Set>`` of SvANet's layout; returns the output folder.

    Args:
        source: the ``<Set>`` folder (``train/``, ``val/`` or ``test/``, ``mask/``).
        output: destination (default ``$SVSEG_DATA_DIR/svanet_<set>``).
        subset: the set name when the folder is not named after it.
        seed, repeats, val_fraction: the seeded repeats of the train/validation hold-out.
        cases: convert only these case ids. progress: a progress bar.

    Raises:
        ConversionError: another layout, a mask value that is not a class id, both ``val/`` and ``test/``.
        FileNotFoundError: an image without its mask.
    """
    folder = require_layout(source, "svanet")
    subset_name = set_name(folder, subset)
    class_names = ["background"] + SVANET_SETS[subset_name]
    if (folder / "val").is_dir() and (folder / "test").is_dir():
        raise ConversionError(f"{folder}: holds both val/ and test/; SvANet reads one of them as its evaluation split.")
    test_dir = folder / ("val" if (folder / "val").is_dir() else "test")
    found: dict[str, tuple[Path, bool]] = {}
    for split_dir, test in ((folder / "train", False), (test_dir, True)):
        for path in image_files(split_dir):
            cid = case_id(path.stem)
            if cid in found:
                raise ConversionError(f"{path}: case id {cid!r} is also the id of {found[cid][0]}.")
            found[cid] = (path, test)
    chosen = filter_cases(found, cases, folder)
    for cid, (path, _) in chosen.items():
        if not (folder / "mask" / f"{path.stem}.png").is_file():
            raise FileNotFoundError(f"{folder / 'mask' / (path.stem + '.png')}: mask of {path} not found.")
    name = f"svanet_{subset_name.lower()}"
    out = output_folder(name, output, overwrite)
    with nnunet_output(out, overwrite, ".png") as writer:
        for cid in with_progress(sorted(chosen), f"SvANet {subset_name}", progress):
            path, test = chosen[cid]
            mask_path = folder / "mask" / f"{path.stem}.png"
            image = read_rgb(path)
            label = mask_ids(mask_path, len(class_names))
            if label.shape != image.shape[:2]:
                raise ConversionError(f"{mask_path}: mask shape {label.shape} differs from the image {path.name} "
                                      f"shape {image.shape[:2]}.")
            writer.add_case(cid, [image], label, test, [path, mask_path])
        groups = {cid: scan_of(chosen[cid][0].stem, subset_name) for cid in writer.training}
        splits = repeat_splits(groups, repeats, val_fraction, seed)
        split_text = (f"train/ -> imagesTr, {test_dir.name}/ -> imagesTs (SvANet's evaluation folder); "
                      f"splits_final.json: {repeats} seeded repeats (SvANet trains 3) of a random "
                      f"{round(val_fraction * 100)}% validation hold-out of train/, np.random.RandomState(seed + r), "
                      f"seed {seed}" + (", drawn per scan" if subset_name in SLICED_SETS else ""))
        writer.finish(name, {"0": "R", "1": "G", "2": "B"}, class_names,
                      {"source_layout": "svanet", "paper": "SvANet (Dai et al., arXiv 2407.07720)", "set": subset_name,
                       "protocol": "svanet", "split": split_text},
                      splits, {"subset": subset_name, "seed": seed, "repeats": repeats, "val_fraction": val_fraction})
        log.info("SvANet %s: %d training, %d test images", subset_name, len(writer.training), len(writer.test))
    return out
