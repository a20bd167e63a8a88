"""DICOM series as svseg reads them: one series per folder, checked, then converted to NIfTI.

The reading is SimpleITK's (GDCM): :class:`SimpleITK.ImageSeriesReader` finds the series of a folder,
sorts its slices along the slice normal, applies ``RescaleSlope``/``RescaleIntercept`` and gives the
origin, spacing and direction in DICOM's LPS patient frame. The writing is SimpleITK's too: its NIfTI
writer turns the LPS geometry into the RAS ``qform``/``sform`` that nibabel (and every other NIfTI
reader) expects, so a label map written with that NIfTI's affine overlays the DICOM series.

What svseg adds are the checks a clinical folder needs before a network runs on it; each failure
is one line naming the folder:

* a folder holds exactly one series (two or more: their SeriesInstanceUIDs and descriptions are
  named; put each series in its own folder);
* every visible file of the folder is a slice of that series (a stray file is named; hidden files
  and a ``DICOMDIR`` are ignored);
* the slices are evenly spaced: a step between consecutive slice positions (ImagePositionPatient
  along the slice normal) that differs from the median step by more than
  :data:`MAX_SPACING_DEVIATION` of it means a slice is missing or repeated, or two acquisitions share a
  series UID; ITK would stack them on an even grid anyway (it only warns), with a wrong geometry.
  (ITK's own ``ITK_non_uniform_sampling_deviation`` value cannot be read through SimpleITK, and ITK
  flags sub-micrometre jitter too, so the tolerance is applied here, to the positions ITK read);
* the slices stack into one grey-level volume (same size; colour series are refused).

A folder *is* a DICOM series folder when one of its visible files is a DICOM file
(:func:`is_dicom_file`: the ``DICM`` marker of DICOM part 10, or a ``.dcm`` ending).

Like the rest of :mod:`svseg.io`, this module imports SimpleITK only inside the functions that need it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from svseg.io.atomic import PathLike, atomic_path
from svseg.io.cases import CASE_SUFFIXES

__all__ = ["MAX_SPACING_DEVIATION", "is_dicom_file", "is_dicom_folder", "dicom_series_uids", "read_dicom_series",
           "dicom_to_nifti"]

#: largest accepted deviation of a slice position from an even grid, as a fraction of the slice spacing
#: (scanners write positions with sub-micrometre jitter; a missing slice deviates by about one spacing)
MAX_SPACING_DEVIATION = 0.05

# ITK's exception text: "Exception thrown in SimpleITK <call>: <source file>:<line>:\n[ITK ERROR: <object>(0x..): ]<reason>"
_ITK_PREFIX = re.compile(r"^.*?\.[ch]xx:\d+:\s*(ITK ERROR: [^:]*: )?", re.DOTALL)
_ITK_DETAIL = re.compile(r"\s*(Requested region:.*|\(0x[0-9a-f]+\))", re.IGNORECASE)


def _visible_files(folder: Path) -> list[Path]:
    """The files of ``folder`` a series folder may hold: not hidden, not a ``DICOMDIR`` index."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR")


def is_dicom_file(path: PathLike) -> bool:
    """Whether ``path`` is a DICOM file: a ``.dcm`` ending, or the ``DICM`` marker at byte 128 (DICOM part 10).

    Files with a known image ending of svseg (``.nii.gz``, ``.png``, ...) are not opened.
    """
    name = Path(path).name.lower()
    if name.endswith(".dcm"):
        return True
    if name.endswith(CASE_SUFFIXES):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def is_dicom_folder(path: PathLike) -> bool:
    """Whether ``path`` is a folder holding DICOM files directly (a series folder)."""
    folder = Path(path)
    return folder.is_dir() and any(is_dicom_file(p) for p in _visible_files(folder))


def dicom_series_uids(folder: PathLike) -> list[str]:
    """The SeriesInstanceUIDs of the DICOM files directly in ``folder`` (GDCM's scan, not recursive)."""
    import SimpleITK as sitk

    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(os.fspath(folder)))


def _describe(folder: Path, uid: str) -> str:
    """``<uid> ("<SeriesDescription>")``, the description read from the series' first file when it has one."""
    import SimpleITK as sitk

    first = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(os.fspath(folder), uid)
    description = ""
    if first:
        reader = sitk.ImageFileReader()
        reader.SetFileName(first[0])
        try:
            reader.ReadImageInformation()
            if reader.HasMetaDataKey("0008|103e"):
                description = reader.GetMetaData("0008|103e").strip()
        except RuntimeError:
            description = ""
    return f"{uid} ({description!r})" if description else uid


def _itk_message(exc: BaseException) -> str:
    """The reason in an ITK exception, without its source file and object address."""
    text = _ITK_PREFIX.sub("", str(exc), count=1).strip()
    first = _ITK_DETAIL.sub("", text.splitlines()[0]).strip() if text else ""
    return first or type(exc).__name__


def read_dicom_series(folder: PathLike) -> Any:
    """Read the one DICOM series of ``folder`` as a 3D ``SimpleITK.Image`` (LPS geometry), checked.

    Raises:
        FileNotFoundError: ``folder`` is not a folder.
        ValueError: ``<folder>: <problem>`` for a folder with no series or several, a file that is not a
            slice of the series, unevenly spaced slices (a missing slice), slices that do not stack into
            one volume, or a colour series.
    """
    import SimpleITK as sitk

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"DICOM series folder {str(folder)!r} does not exist.")
    uids = dicom_series_uids(folder)
    if not uids:
        raise ValueError(f"{folder}: holds no readable DICOM image series")
    if len(uids) > 1:
        raise ValueError(f"{folder}: holds {len(uids)} DICOM series, {', '.join(_describe(folder, u) for u in uids)}; "
                         "svseg reads one series per folder: put each series in its own folder")
    uid = uids[0]
    names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(os.fspath(folder), uid)
    slices = {Path(n).name for n in names}
    junk = [p.name for p in _visible_files(folder) if p.name not in slices]
    if junk:
        more = f" (and {len(junk) - 1} more)" if len(junk) > 1 else ""
        raise ValueError(f"{folder}: {junk[0]}{more} is not a slice of DICOM series {uid}; a series folder must "
                         "hold only the slices of its series")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    reader.MetaDataDictionaryArrayUpdateOn()  # each slice's tags, for the spacing check
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK's spacing warning is reported below, as an error
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise ValueError(f"{folder}: the {len(names)} slices of DICOM series {uid} do not stack into one volume "
                         f"({_itk_message(e)})") from e
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{folder}: DICOM series {uid} is a colour series ({image.GetNumberOfComponentsPerPixel()} "
                         "values per pixel); svseg reads grey-level series")
    if image.GetDimension() != 3:
        raise ValueError(f"{folder}: DICOM series {uid} reads as a {image.GetDimension()}D image, not a 3D volume")
    _check_even_spacing(folder, uid, reader, image, len(names))
    return image


def _check_even_spacing(folder: Path, uid: str, reader: Any, image: Any, n: int) -> None:
    """Refuse slices whose positions along the slice normal are not evenly spaced (see the module notes)."""
    tag = "0020|0032"  # ImagePositionPatient
    if n < 3 or not all(reader.HasMetaDataKey(i, tag) for i in range(n)):
        return  # two slices are always even; without positions ITK stacks by file order and there is nothing to check
    normal = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    positions = [float(np.dot(normal, [float(v) for v in reader.GetMetaData(i, tag).split("\\")[:3]]))
                 for i in range(n)]
    steps = np.diff(positions)
    typical = float(np.median(np.abs(steps)))
    worst = int(np.argmax(np.abs(np.abs(steps) - typical)))
    if typical <= 0 or abs(abs(steps[worst]) - typical) > MAX_SPACING_DEVIATION * typical:
        raise ValueError(f"{folder}: the {n} slices of DICOM series {uid} are not evenly spaced (slices {worst + 1} "
                         f"and {worst + 2} along the normal are {abs(steps[worst]):.4g} mm apart, the others "
                         f"{typical:.4g} mm): a slice is missing or repeated, or the series mixes acquisitions")


def dicom_to_nifti(folder: PathLike, out_path: PathLike) -> Path:
    """Convert the DICOM series of ``folder`` (checked by :func:`read_dicom_series`) to a NIfTI file, atomically.

    The NIfTI keeps the series' voxel values (rescaled to modality units, e.g. Hounsfield units) and its
    geometry, written as the RAS affine nibabel reads (SimpleITK's NIfTI writer converts from LPS).

    Returns:
        ``out_path`` (``.nii.gz`` or ``.nii``).
    """
    import SimpleITK as sitk

    out = Path(out_path)
    if not out.name.lower().endswith((".nii.gz", ".nii")):
        raise ValueError(f"out_path must end in .nii.gz or .nii, got {out.name!r}.")
    image = read_dicom_series(folder)
    with atomic_path(out) as tmp:
        sitk.WriteImage(image, os.fspath(tmp), useCompression=out.name.lower().endswith(".gz"))
    return out
