"""What :func:`svseg.bundle.predict` does around a bundle run: stage the inputs, skip finished cases.

* :func:`stage_inputs`: the bundle's ``inference.json`` reads image files from one folder
  (``input_dir``). A single file, a subset of a folder (``--continue``) or a DICOM series therefore
  goes into a temporary staging folder first: an image file as a link (a copy where links are not
  allowed), a DICOM series folder as ``<folder name>.nii.gz`` (:func:`svseg.io.dicom_to_nifti`, checked
  and in the series' geometry), so its label map is ``<folder name>_seg.nii.gz``.
* :func:`case_outputs` and :func:`pending_inputs`: the files one case leaves in the output folder
  (its label map, its ``_statistics.json``, with ``--save-probabilities`` its ``.npz``) and, for
  ``svseg predict --continue``, the inputs whose files are not all there yet. Every writer of these
  files is atomic (a temporary file renamed into place), so a file that exists is complete. A
  skipped case is not compared with the run's options: ``--continue`` goes on with the options of the
  interrupted run.
* :func:`prediction_class_names`: the class names a model predicts, for the statistics.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from svseg.bundle.config import class_names, input_cases, input_files
from svseg.bundle.model_info import read_model_info
from svseg.inference.statistics import STATISTICS_SUFFIX
from svseg.io import IMAGE_2D_SUFFIXES, dicom_to_nifti

__all__ = ["stage_inputs", "prediction_path", "case_outputs", "pending_inputs", "prediction_class_names"]


def stage_inputs(source: Path, files: Sequence[Path], staging: Path) -> Path:
    """The folder the bundle should read to predict ``files`` (inputs of ``source``, :func:`input_files`).

    That is ``source`` itself when it is a folder whose inputs are all image files and all to be
    predicted; otherwise ``staging``, filled with a link to each image file and a NIfTI of each DICOM
    series folder.

    Raises:
        ValueError: a DICOM series that fails its checks (:func:`svseg.io.read_dicom_series`).
    """
    files = [Path(f).absolute() for f in files]
    if source.is_dir() and not any(f.is_dir() for f in files) and files == [
            f.absolute() for f in input_files(source)]:
        return source
    staging.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.is_dir():
            dicom_to_nifti(f, staging / f"{f.name}.nii.gz")
            continue
        link = staging / f.name
        try:
            link.symlink_to(f.absolute())
        except OSError:
            shutil.copy2(f, link)
    return staging


def prediction_path(output_dir: Path, case: str, image: str | Sequence[str], postfix: str = "_seg") -> Path:
    """The label map of ``case``: ``<case>_seg.png`` for a 2D image file, else ``<case>_seg.nii.gz``
    (a NIfTI, NRRD, MHA or HDF5 volume, or a DICOM series folder)."""
    first = Path(image if isinstance(image, (str, Path)) else image[0])
    return output_dir / f"{case}{postfix}{'.png' if first.name.lower().endswith(IMAGE_2D_SUFFIXES) else '.nii.gz'}"


def case_outputs(output_dir: Path, case: str, image: str | Sequence[str], probabilities: bool = False) -> list[Path]:
    """The files a predicted case has in ``output_dir``: its label map, its statistics and, with
    ``probabilities``, its ``<case>.npz`` (:func:`svseg.inference.write_probabilities`)."""
    out = [prediction_path(output_dir, case, image), output_dir / f"{case}{STATISTICS_SUFFIX}"]
    return out + [output_dir / f"{case}.npz"] if probabilities else out


def pending_inputs(files: Sequence[Path], output_dir: Path, probabilities: bool = False) -> tuple[list[Path], list[str]]:
    """Split ``files`` (:func:`input_files`) into the inputs of cases still to predict and the ids of
    the cases whose outputs (:func:`case_outputs`) all exist in ``output_dir``."""
    todo: list[Path] = []
    done: list[str] = []
    for case, image in input_cases(list(files)):
        if all(p.is_file() for p in case_outputs(output_dir, case, image, probabilities)):
            done.append(case)
        else:
            todo.extend(Path(f) for f in ([image] if isinstance(image, str) else image))
    return todo, done


def prediction_class_names(checkpoint: Path, dataset_name: str | None, bundle_root: Path) -> list[str]:
    """The class names (background first) of the model in ``checkpoint``: its ``svseg_model.json``'s
    ``class_names``, else those of ``dataset_name`` (default the bundle's ``inference.json`` data set),
    the data set the weights are run as."""
    names = (read_model_info(checkpoint) or {}).get("class_names")
    if names:
        return [str(n) for n in names]
    if dataset_name is None:
        dataset_name = json.loads((bundle_root / "configs" / "inference.json").read_text())["dataset_name"]
    return class_names(str(dataset_name))
