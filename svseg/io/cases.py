"""Case ids from file names, and predictions paired with references by case id."""

from __future__ import annotations

import warnings
from pathlib import Path

from svseg.io.atomic import PathLike
from svseg.io.formats import NIFTI_SUFFIXES

__all__ = ["CASE_SUFFIXES", "MATCH_ENDINGS", "case_name", "match_files"]

#: file endings :func:`case_name` removes (compared case-insensitively, longest first)
CASE_SUFFIXES = (
    ".nii.gz", ".npy.h5", ".nii", ".h5", ".hdf5", ".npz", ".npy", ".nrrd", ".mha", ".mhd",
    ".png", ".jpg", ".jpeg", ".tif", ".tiff",
)
#: name endings :func:`match_files` removes when an exact case match fails
#: (``case01_pred.nii.gz`` <-> ``case01.nii.gz``)
MATCH_ENDINGS = ("_pred", "_prediction", "_seg", "_gt", "_label", "_labels", "_mask", "_0000")


def case_name(path: PathLike) -> str:
    """The case id of a file: its name without a known image ending.

    ``case01.nii.gz`` -> ``case01``, ``case0001.npy.h5`` -> ``case0001``, ``x.NRRD`` -> ``x``
    (endings in :data:`CASE_SUFFIXES`, any letter case); an unknown ending is removed like
    :attr:`pathlib.Path.stem` does.
    """
    name = Path(path).name
    lower = name.lower()
    for suffix in CASE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _strip_ending(case: str) -> str:
    for end in MATCH_ENDINGS:
        if case.endswith(end) and len(case) > len(end):
            return case[: -len(end)]
    return case


def _nifti_by_case(folder: Path) -> dict[str, Path]:
    return {case_name(p): p for p in sorted(folder.iterdir()) if p.name.endswith(NIFTI_SUFFIXES)}


def match_files(pred_dir: PathLike, ref_dir: PathLike, allow_missing: bool = False) -> list[tuple[str, Path, Path]]:
    """Pair the NIfTI files of two folders by case id.

    A reference ``X.nii.gz`` matches a prediction ``X.nii.gz`` (or ``X.nii``); failing that, ids
    are compared after removing one ending of :data:`MATCH_ENDINGS` (``_pred``, ``_seg``, ``_gt``,
    ``_label``, ``_mask``, ``_0000`` ...) from either side. The reported case is the reference's
    id without such an ending.

    Returns:
        ``[(case, pred_path, ref_path), ...]`` sorted by case.

    Raises:
        FileNotFoundError: a folder is missing or holds no NIfTI file, or (unless
            ``allow_missing``) a reference has no prediction; with ``allow_missing`` a warning
            names the skipped references. Predictions without reference are ignored with a warning.
    """
    pdir, rdir = Path(pred_dir), Path(ref_dir)
    for folder, what in ((pdir, "pred_dir"), (rdir, "ref_dir")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} {str(folder)!r} is not a folder.")
    preds, refs = _nifti_by_case(pdir), _nifti_by_case(rdir)
    if not refs:
        raise FileNotFoundError(f"ref_dir {str(rdir)!r} holds no .nii/.nii.gz files.")
    if not preds:
        raise FileNotFoundError(f"pred_dir {str(pdir)!r} holds no .nii/.nii.gz files.")
    preds_stripped = {_strip_ending(k): v for k, v in preds.items()}
    pairs, missing, used = [], [], set()
    for case, rpath in refs.items():
        short = _strip_ending(case)
        ppath = preds.get(case) or preds.get(short) or preds_stripped.get(case) or preds_stripped.get(short)
        if ppath is None:
            missing.append(case)
            continue
        used.add(ppath)
        pairs.append((short, ppath, rpath))
    if missing and not allow_missing:
        raise FileNotFoundError(f"no prediction in {str(pdir)!r} for reference case(s): {', '.join(missing)}.")
    if missing:
        warnings.warn(f"skipping reference case(s) without prediction: {', '.join(missing)}", stacklevel=2)
    extra = sorted(p.name for p in preds.values() if p not in used)
    if extra:
        warnings.warn(f"predictions without reference are ignored: {', '.join(extra)}", stacklevel=2)
    return sorted(pairs)
