"""LiTS liver / liver-tumour CT: the training release (``volume-N.nii`` / ``segmentation-N.nii``)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from svseg.data.convert import common
from svseg.data.specs import get_dataset, kfold_split
from svseg.data.transforms import ct_window

__all__ = ["convert_lits"]


def _lits_cases(source: Path) -> dict[str, tuple[Path, Path]]:
    found: dict[str, tuple[Path, Path]] = {}
    for f in sorted(source.rglob("volume-*.nii*")):
        m = re.match(r"volume-(\d+)\.nii(\.gz)?$", f.name)
        if not m:
            continue
        case = f"volume-{int(m.group(1))}"
        if case in found:
            raise common.ConversionError(f"{f}: case {case} found twice (also {found[case][0]}).")
        seg = f.with_name(f.name.replace("volume-", "segmentation-", 1))
        found[case] = (f, seg)
    return found


def convert_lits(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    cases: Sequence[str] | None = None,
    window: tuple[float, float] = (-250.0, 250.0),
    fold: int | None = None,
    n_folds: int = 5,
    slices: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Convert the LiTS training release (``volume-N.nii`` / ``segmentation-N.nii``, N = 0..130).

    Args:
        source: folder holding the files (searched recursively, e.g. both "Training Batch" folders).
        output: destination (default ``$SVSEG_DATA_DIR/lits``).
        cases: convert only these ids (``volume-N``); default: all 131.
        window: HU window clipped and scaled to [0, 1] (AFMA clips to [-250, 250]).
        fold: with ``n_folds``, replace the fixed training/validation split by fold ``fold`` of a
            k-fold split over the 118 non-test volumes (the 13 test volumes stay fixed).
        n_folds: number of folds.
        slices: also write a 2D slice cache (``train_npz/`` + ``lists/train.txt``) and H5 test volumes.
        overwrite: replace an existing output folder.
        progress: show a progress bar.
    """
    source = Path(source).expanduser().absolute()
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source folder not found.")
    spec = get_dataset("lits")
    output = common.output_folder("lits", output, overwrite)
    official = dict(spec.splits)
    if fold is not None:
        kf = kfold_split(official["training"] + official["validation"], n_folds, fold)
        official = {"training": kf["training"], "validation": kf["validation"], "test": official["test"]}
    found = _lits_cases(source)
    splits = common.select_cases(official, found, cases, source, lambda c: f"{c}.nii")
    todo = [(split, c) for split, ids in splits.items() for c in ids]
    with common.converting(output, overwrite, nifti=True, transunet=slices) as w:
        for split, case in common.with_progress(todo, "lits", progress):
            image, label, affine = common.check_pair(*found[case], allowed_labels=spec.label_ids)
            w.add(case, split, ct_window(image, *window), label, affine)
        common.finish_conversion(
            w,
            spec,
            {"dataset": "lits", "version": common.CONVERTER_VERSION, "source": str(source), "window": list(window), "fold": fold, "n_folds": n_folds, "splits": splits},
            f"LiTS liver/tumour CT, HU [{window[0]:g}, {window[1]:g}] -> [0, 1]; svseg fixed split" + (f", fold {fold}/{n_folds}" if fold is not None else "") + ".",
        )
    return output
