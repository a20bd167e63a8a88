"""Case ids from file names, and predictions paired with references by case id.

Label files are NIfTI volumes or 2D image masks. The 2D endings are plain constants here
(:data:`LABEL_2D_SUFFIXES`, :data:`REFERENCE_2D_SUFFIXES`): :mod:`svseg.io` imports nothing else of
svseg, so it cannot ask :mod:`svseg.data` which endings it reads.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from svseg.io.atomic import PathLike
from svseg.io.formats import NIFTI_SUFFIXES
from svseg.io.images2d import IMAGE_2D_SUFFIXES

__all__ = ["CASE_SUFFIXES", "LABEL_2D_SUFFIXES", "MATCH_ENDINGS", "REFERENCE_2D_SUFFIXES", "case_name", "match_files"]

#: file endings :func:`case_name` removes (compared case-insensitively, longest first)
CASE_SUFFIXES = (
    ".nii.gz", ".npy.h5", ".nii", ".h5", ".hdf5", ".npz", ".npy", ".nrrd", ".mha", ".mhd",
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff",
)
#: 2D label-map endings :func:`match_files` pairs, predictions and references (lossless formats)
LABEL_2D_SUFFIXES = tuple(s for s in IMAGE_2D_SUFFIXES if s not in (".jpg", ".jpeg"))
#: 2D endings also accepted for references: some data sets ship JPEG masks (lossy, so a value that
#: is not a class id is refused when the mask is read)
REFERENCE_2D_SUFFIXES = IMAGE_2D_SUFFIXES
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


def _files_by_case(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """``{case id: file}`` of the files of ``folder`` with one of ``suffixes`` (any letter case).

    Two files of one case id (``x.nii.gz`` and ``x.png``): the ending listed first in ``suffixes``
    wins and a warning names the other.
    """
    found: dict[str, tuple[int, Path]] = {}
    dropped = []
    for p in sorted(folder.iterdir()):
        lower = p.name.lower()
        rank = next((i for i, suf in enumerate(suffixes) if lower.endswith(suf)), None)
        if rank is None or not p.is_file():
            continue
        case = case_name(p)
        if case in found:
            keep, drop = ((rank, p), found[case]) if rank < found[case][0] else (found[case], (rank, p))
            found[case] = keep
            dropped.append(f"{drop[1].name} (kept {keep[1].name})")
        else:
            found[case] = (rank, p)
    if dropped:
        warnings.warn(f"{folder}: several label files of one case, ignored: {', '.join(dropped)}", stacklevel=3)
    return {case: p for case, (_, p) in found.items()}


def match_files(pred_dir: PathLike, ref_dir: PathLike, allow_missing: bool = False) -> list[tuple[str, Path, Path]]:
    """Pair the label files of two folders by case id: NIfTI volumes and 2D masks.

    Predictions: ``.nii.gz``/``.nii`` and the 2D endings :data:`LABEL_2D_SUFFIXES` (PNG, BMP, TIFF);
    references also JPEG (:data:`REFERENCE_2D_SUFFIXES`). A reference ``X.nii.gz`` matches a
    prediction ``X.nii.gz`` (or ``X.nii``, ``X.png`` ...); failing that, ids are compared after
    removing one ending of :data:`MATCH_ENDINGS` (``_pred``, ``_seg``, ``_gt``, ``_label``, ``_mask``,
    ``_0000`` ...) from either side, so ``tile03_seg.png`` pairs with ``tile03.png``. The reported
    case is the reference's id without such an ending. Whether the two files of a pair hold maps of
    one shape is for the reader to check.

    Returns:
        ``[(case, pred_path, ref_path), ...]`` sorted by case.

    Raises:
        FileNotFoundError: a folder is missing or holds no label file, or (unless
            ``allow_missing``) a reference has no prediction; with ``allow_missing`` a warning
            names the skipped references. Predictions without reference are ignored with a warning.
    """
    pdir, rdir = Path(pred_dir), Path(ref_dir)
    for folder, what in ((pdir, "pred_dir"), (rdir, "ref_dir")):
        if not folder.is_dir():
            raise FileNotFoundError(f"{what} {str(folder)!r} is not a folder.")
    preds = _files_by_case(pdir, NIFTI_SUFFIXES + LABEL_2D_SUFFIXES)
    refs = _files_by_case(rdir, NIFTI_SUFFIXES + REFERENCE_2D_SUFFIXES)
    if not refs:
        raise FileNotFoundError(f"ref_dir {str(rdir)!r} holds no .nii/.nii.gz files nor 2D label files "
                                f"({', '.join(REFERENCE_2D_SUFFIXES)}).")
    if not preds:
        raise FileNotFoundError(f"pred_dir {str(pdir)!r} holds no .nii/.nii.gz files nor 2D label files "
                                f"({', '.join(LABEL_2D_SUFFIXES)}).")
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
