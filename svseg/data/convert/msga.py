"""The MSGA CHAOS MRI slice layout (sinAshish/Multi-Scale-Attention) -> one NIfTI volume per subject.

The layout (``src/data/medicalDataLoader.py: make_dataset``; the sample ``DataSetSample/train/``)::

    <root>/{train,val,test}/Img/Subj_<X>slice_<Y>.png     grey 8-bit MRI slices
    <root>/{train,val,test}/GT/Subj_<X>slice_<Y>.png      grey levels 0, 63, 126, 189, 252

``X`` and ``Y`` are written without zero padding and the slices of a subject start at 1
(``src/common/utils.py: reconstruct3D`` stacks ``1.png .. N.png`` into an ``(H, W, N)`` volume).
The GT grey level divided by 63 is the class id (``reconstruct3D``: ``/63``; ``getTargetSegmentation``:
``round(v / 0.24705882)``, i.e. /63 on 0..255): 1 liver, 2 right kidney, 3 left kidney, 4 spleen (CHAOS).

svseg re-stacks every subject's slices, ordered by ``Y``, into ``<Subj_X>_0000.nii.gz`` (``(H, W, N)``, the
slice index last as in ``reconstruct3D``; channel name ``MRI``) and ``Subj_X.nii.gz`` (class ids), so 3D
evaluation works per subject. The PNG slices carry no spacing: the affine is the identity unless
``spacing=`` gives one. Refused, each naming the file or subject: a name that is not
``Subj_<X>slice_<Y>.png``, zero padding in ``X`` or ``Y``, slice numbers that do not run 1..N without gaps,
an image without its GT, slices of different shapes, a GT level that is not a multiple of 63 up to 252, and a
subject in two split folders.

Split: ``train`` + ``val`` -> ``imagesTr`` with the one fold in ``splits_final.json`` (MSGA's ``main.py``
trains on ``train`` and selects the best epoch on ``val``), ``test`` -> ``imagesTs``/``labelsTs``.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from svseg.data.convert.common import ConversionError, output_folder, with_progress
from svseg.data.convert.paper_common import filter_cases, nnunet_output, read_mask_values, require_layout
from svseg.io import PathLike

__all__ = ["CHAOS_CLASSES", "GT_STEP", "convert_msga", "parse_slice_name", "subject_slices"]

log = logging.getLogger(__name__)

CHAOS_CLASSES = ["background", "liver", "right kidney", "left kidney", "spleen"]
#: the GT grey level of class id k is k * GT_STEP
GT_STEP = 63
_NAME = re.compile(r"^Subj_(?P<subj>\d+)slice_(?P<slice>\d+)\.png$")
_SPLITS = ("train", "val", "test")


def parse_slice_name(path: Path) -> tuple[str, int]:
    """``(subject, slice)`` of ``Subj_<X>slice_<Y>.png``; another name or zero padding is an error."""
    m = _NAME.match(path.name)
    if m is None:
        raise ConversionError(f"{path}: not a MSGA slice name Subj_<X>slice_<Y>.png.")
    for part in ("subj", "slice"):
        if len(m[part]) > 1 and m[part].startswith("0"):
            raise ConversionError(f"{path}: zero-padded number {m[part]!r}; MSGA names are not zero padded "
                                  "(Subj_21slice_22.png).")
    return m["subj"], int(m["slice"])


def subject_slices(folder: Path) -> dict[str, dict[int, Path]]:
    """``subject -> {slice number: file}`` of one ``Img`` or ``GT`` folder."""
    out: dict[str, dict[int, Path]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        subj, y = parse_slice_name(path)
        out.setdefault(subj, {})[y] = path
    return out


def check_numbering(subj: str, slices: dict[int, Path], folder: Path) -> list[Path]:
    """The files of a subject ordered by slice number, after checking it runs 1..N without gaps."""
    numbers = sorted(slices)
    missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
    if missing or numbers[0] != 1:
        raise ConversionError(f"{folder}: subject Subj_{subj} has slices {numbers[0]}..{numbers[-1]} with gaps "
                              f"(missing {missing[:5]}); MSGA slices run 1..N without gaps.")
    return [slices[y] for y in numbers]


def gt_ids(path: Path) -> np.ndarray:
    """A GT slice as class ids 0..4 (grey level / 63); another level is refused, naming the file."""
    values = read_mask_values(path)
    found = set(np.unique(values).tolist())
    bad = sorted(found - {k * GT_STEP for k in range(len(CHAOS_CLASSES))})
    if bad:
        raise ConversionError(f"{path}: GT grey levels {bad[:8]} are not multiples of {GT_STEP} in 0..252 "
                              f"(class id = level / {GT_STEP}).")
    return (values // GT_STEP).astype(np.uint8)


def stack(paths: Sequence[Path], label: bool) -> np.ndarray:
    """The slices of one subject as an ``(H, W, N)`` uint8 volume; slices of different shapes are refused."""
    planes = []
    for path in paths:
        plane = gt_ids(path) if label else read_mask_values(path)
        if not label and (plane.min() < 0 or plane.max() > 255):
            raise ConversionError(f"{path}: expected an 8-bit grey MRI slice.")
        if planes and plane.shape != planes[0].shape:
            raise ConversionError(f"{path}: slice shape {plane.shape} differs from {paths[0].name} {planes[0].shape}.")
        planes.append(plane.astype(np.uint8))
    return np.stack(planes, axis=-1)


def convert_msga(source: PathLike, output: PathLike | None = None, spacing: Sequence[float] | None = None,
                 overwrite: bool = False, cases: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Convert MSGA's CHAOS slice folders into one NIfTI volume per subject; returns the output folder.

    Args:
        source: the folder holding ``train/``, ``val/``, ``test/`` (each with ``Img/`` and ``GT/``).
        output: destination (default ``$SVSEG_DATA_DIR/msga_chaos``).
        spacing: voxel size (x, y, z) in mm for the affine (default 1, 1, 1: the slices carry none).
        cases: convert only these subjects (``Subj_21``). progress: a progress bar.
    """
    folder = require_layout(source, "msga")
    subjects: dict[str, tuple[str, list[Path], list[Path]]] = {}
    for split in _SPLITS:
        if not (folder / split).is_dir():
            continue
        img_dir, gt_dir = folder / split / "Img", folder / split / "GT"
        if not img_dir.is_dir() or not gt_dir.is_dir():
            raise ConversionError(f"{folder / split}: expected the Img/ and GT/ folders of MSGA's layout.")
        images, truths = subject_slices(img_dir), subject_slices(gt_dir)
        for subj, slices in sorted(images.items(), key=lambda kv: int(kv[0])):
            cid = f"Subj_{subj}"
            if cid in subjects:
                raise ConversionError(f"{img_dir}: subject {cid} is also in {subjects[cid][0]}/.")
            img_files = check_numbering(subj, slices, img_dir)
            gt_slices = truths.get(subj, {})
            for y, path in sorted(slices.items()):
                if y not in gt_slices:
                    raise FileNotFoundError(f"{gt_dir / path.name}: GT of {path} not found.")
            extra = sorted(set(gt_slices) - set(slices))
            if extra:
                raise ConversionError(f"{gt_slices[extra[0]]}: GT slice without an image in {img_dir}.")
            subjects[cid] = (split, img_files, [gt_slices[y] for y in sorted(slices)])
        for subj in sorted(set(truths) - set(images)):
            raise ConversionError(f"{gt_dir}: subject Subj_{subj} has GT slices but no images in {img_dir}.")
    chosen = filter_cases(subjects, cases, folder)
    affine = np.diag([*(float(s) for s in (spacing or (1.0, 1.0, 1.0))), 1.0])
    name = "msga_chaos"
    out = output_folder(name, output, overwrite)
    with nnunet_output(out, overwrite, ".nii.gz") as writer:
        for cid in with_progress(sorted(chosen, key=lambda c: int(c[5:])), "MSGA CHAOS", progress):
            split, img_files, gt_files = chosen[cid]
            image, label = stack(img_files, False), stack(gt_files, True)
            if image.shape != label.shape:
                raise ConversionError(f"{gt_files[0]}: GT slices of {cid} have shape {label.shape[:2]}, "
                                      f"the images {image.shape[:2]}.")
            writer.add_case(cid, [image], label, split == "test", [img_files[0].parent, gt_files[0].parent], affine)
        splits = [{"train": [c for c in writer.training if chosen[c][0] == "train"],
                   "val": [c for c in writer.training if chosen[c][0] == "val"]}]
        text = ("MSGA folders: train = train, val = validation (MSGA main.py), test -> imagesTs; each subject's "
                "Subj_<X>slice_<Y>.png re-stacked by Y into one volume")
        writer.finish(name, {"0": "MRI"}, CHAOS_CLASSES,
                      {"source_layout": "msga", "paper": "MSGA (Sinha & Dolz, IEEE JBHI 2020), CHAOS MRI",
                       "protocol": "msga", "split": text},
                      splits, {"spacing": list(np.diag(affine)[:3])})
        log.info("MSGA CHAOS: %d training, %d test subjects", len(writer.training), len(writer.test))
    return out
