"""What a bundle's JSON cannot express itself: the data set's rules, looked up by name.

The bundles under ``bundles/`` spell out their recipe in JSON (network, transforms, loss,
optimiser, trainer, evaluator, handlers), as the MONAI model zoo does. What depends on the data
set (class names, the intensity range of prepared data, the case lists of each split, the
evaluation protocol it is published with) lives once, in :mod:`svseg.data`, and reaches the JSON
through the functions here (``"$sb.class_names(@dataset_name)"`` after ``"$import svseg.bundle as sb"``).

A data set is chosen by ``dataset_name`` alone: a known name (``synapse``, ``lits``, ``acdc``,
``demo``), whose ``data_root`` says where its prepared files are, or a user's data set folder (or its
``dataset.json``), whose ``plan.json`` (:mod:`svseg.data.plan`, planned on first use) gives the classes,
channels, intensity rule, slice axis, input size and folds. The class count therefore never depends on whether a ``data_root`` is given, so
``network_def`` always agrees with ``metadata.json``. The demo data is used only when asked for
(``dataset_name`` ``demo``, e.g. through ``configs/demo.json``); a paper's data set without a
``data_root`` is an error, never a silent switch to the demo.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from svseg.data import (check_items, datalist_for, dataset_spec, file_suffix, intensity_applied, load_plan,
                        plan_datalist)
from svseg.io import IMAGE_2D_SUFFIXES
from svseg.errors import InputError
from svseg.io import case_name, is_dicom_file, is_dicom_folder

__all__ = [
    "DEMO",
    "class_names",
    "num_classes",
    "protocol",
    "inference_mode",
    "prepared_range",
    "intensity_rule",
    "inputs_prepared",
    "in_channels",
    "spatial_dims",
    "slice_axis",
    "roi_size",
    "input_mean",
    "input_std",
    "datalist",
    "inference_datalist",
    "input_files",
    "input_cases",
    "IMAGE_EXTENSIONS",
]

DEMO = "demo"
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".h5", ".nrrd", ".mha") + IMAGE_2D_SUFFIXES
_SPLIT_ORDER = {"training": ("training",), "validation": ("validation", "test"), "test": ("test", "validation"),
                "evaluation": ("test", "validation")}


def _root(data_root: str | os.PathLike | None) -> str | None:
    return None if data_root in (None, "", "None", "null") else str(data_root)


def _spec(dataset_name: str):
    return dataset_spec(str(dataset_name))


def _planned(dataset_name: str) -> bool:
    return bool(_spec(dataset_name).root)


def class_names(dataset_name: str) -> list[str]:
    """Class names of ``dataset_name`` (index = label id, background first)."""
    return [str(n) for n in _spec(dataset_name).class_names]


def num_classes(dataset_name: str) -> int:
    """Output channels of the network (background included) for ``dataset_name``."""
    return len(class_names(dataset_name))


def protocol(dataset_name: str) -> str:
    """The evaluation protocol ``dataset_name`` is published with (``transunet`` or ``standard``)."""
    return str(_spec(dataset_name).protocol or "standard")


def inference_mode(dataset_name: str) -> str:
    """Slice inference mode: ``transunet`` (cubic zoom, as the published Synapse/ACDC numbers) or ``resize``."""
    return "transunet" if protocol(dataset_name) == "transunet" else "resize"


def prepared_range(dataset_name: str) -> list[float]:
    """``[low, high]`` intensity range of ``dataset_name``'s prepared files (svseg's converters apply
    the data set's intensity rule once, when they write them)."""
    lo, hi = _spec(dataset_name).prepared_range
    return [float(lo), float(hi)]


def intensity_rule(dataset_name: str) -> dict:
    """The intensity rule of ``dataset_name`` (:attr:`svseg.data.DatasetSpec.intensity`)."""
    return dict(_spec(dataset_name).intensity)


def in_channels(dataset_name: str) -> int:
    """Image channels of ``dataset_name`` (1 for the named data sets; the plan's for a folder)."""
    return int(_spec(dataset_name).in_channels)


def spatial_dims(dataset_name: str) -> int:
    """3 when ``dataset_name`` holds volumes (2D networks run on slices), 2 when it holds 2D images."""
    return int(_spec(dataset_name).spatial_dims)


def slice_axis(dataset_name: str) -> int:
    """The axis of the MONAI ``(H, W, D)`` volume along which 2D slices are taken."""
    return int(_spec(dataset_name).slice_axis)


def roi_size(dataset_name: str, bundle: str, default: list[int]) -> list[int]:
    """The 2D input size of ``bundle`` on ``dataset_name``: the plan's for a data set folder, else ``default``
    (the paper's size, as written in the bundle)."""
    sizes = _spec(dataset_name).roi_sizes
    return [int(v) for v in sizes[bundle]] if bundle in sizes else [int(v) for v in default]


def input_mean(dataset_name: str, default: float) -> float:
    """Mean subtracted after the intensity rule: the bundle's paper value on the named data sets (whose
    prepared range is [0, 1]); 0 on a planned data set, whose rule already standardises the image."""
    return 0.0 if _planned(dataset_name) else float(default)


def input_std(dataset_name: str, default: float) -> float:
    """Divisor after the intensity rule: the bundle's paper value, or 1 on a planned data set."""
    return 1.0 if _planned(dataset_name) else float(default)


def inputs_prepared(folder: str | os.PathLike | None, data_root: str | os.PathLike | None = None,
                    dataset_name: str | None = None) -> bool:
    """Whether the images in ``folder`` (default: ``data_root``) already have the intensity rule applied.

    Decided by the marker svseg's converters record in a data set's ``dataset.json`` (in the folder
    or its parent), or by the published TransUNet layout, never by looking at the values
    (:func:`svseg.data.intensity_applied`). The demo without a ``data_root`` is prepared by svseg.
    """
    target = _root(folder) or _root(data_root)
    if target is None:
        return str(dataset_name).lower() == DEMO
    path = Path(target)
    return intensity_applied(path) or intensity_applied(path.parent)


def datalist(dataset_name: str, data_root: str | os.PathLike | None, split: str, fold: int | str = 0) -> list[dict]:
    """Items ``{"image", "label", "case"}`` of ``split`` (``training``, ``validation``, ``test`` or
    ``evaluation``), checked.

    A planned data set folder gives the cases of ``fold`` (``training``/``validation``; ``"all"``: every
    labelled case), its ``imagesTs`` (``test``), or its labelled test cases, else the fold's validation
    cases (``evaluation``); its plan checked every case already.

    ``validation`` falls back to ``test`` when a data set has no validation split (Synapse: the
    MSA2Net code selects on the test volumes), and ``test`` falls back to ``validation``.
    ``validation`` keeps only labelled items. Every item passes :func:`svseg.data.check_items`
    (readable, finite, 3D, label matching the image, label ids in the class list, one file type)
    before any training or evaluation starts; the results are cached per file.

    Raises:
        ValueError: unknown split; no ``data_root`` for a data set other than the demo; no items.
        svseg.data.InputError: a bad case, named with its file and the problem.
    """
    if split not in _SPLIT_ORDER:
        raise ValueError(f"split must be one of {sorted(_SPLIT_ORDER)}, got {split!r}.")
    if _planned(dataset_name):
        return _planned_datalist(str(dataset_name), data_root, split, fold)
    name = str(dataset_name).lower()
    root = _root(data_root)
    if root is None and name != DEMO:
        raise ValueError(f"dataset_name {name!r} needs data_root, the folder prepared by `svseg prepare {name}`; "
                         f"for the demo data choose it explicitly: dataset_name demo (or configs/demo.json).")
    errors = []
    for s in _SPLIT_ORDER[split]:
        try:
            items = datalist_for(name, data_root=root, split=s)
        except (KeyError, ValueError) as e:  # that split does not exist for this data set
            errors.append(f"{s}: {e}")
            continue
        if split in ("validation", "evaluation"):
            items = [item for item in items if item.get("label")]
        if items:
            items = [dict(item, case=item.get("case") or case_name(str(item["image"]))) for item in items]
            _check(name, items)
            return items
    what = "labelled items (validation uses labelled cases only)" if split != "training" else "items"
    raise ValueError(f"dataset {name!r} (data_root={root!r}) has no {what} in splits {list(_SPLIT_ORDER[split])}"
                     + (f": {'; '.join(errors)}" if errors else ""))


def _planned_datalist(dataset: str, data_root: str | os.PathLike | None, split: str, fold: int | str) -> list[dict]:
    if _root(data_root) is not None:
        raise ValueError(f"dataset_name {dataset!r} is a data set folder; data_root ({data_root}) is for the named "
                         "data sets only: leave it unset")
    plan = load_plan(dataset)
    if split == "training" and plan.get("ignore_voxels"):
        raise ValueError(f"data set {dataset} marks {plan['ignore_voxels']} voxels with the ignore label "
                         f"{plan['ignore_label']}; the five bundles' losses have no ignore label, so svseg refuses to "
                         "train on them rather than learn them as a class")
    if split == "evaluation":
        items = [i for i in plan_datalist(dataset, "test") if i.get("label")] or plan_datalist(dataset, "validation", fold)
    else:
        items = plan_datalist(dataset, split, fold)
    if not items:
        raise ValueError(f"data set {dataset} has no {split} cases" + (f" in fold {fold}" if split != "test" else
                                                                       " (no imagesTs/)"))
    return items


def _check(name: str, items: list[dict]) -> None:
    """The shared input check over ``items``: the first item's file types are the data set's (any other is
    refused), volumes are 3D (2D for TransUNet ``.npz`` slices)."""
    first = items[0]
    declared = {file_suffix(first["image"])} | ({file_suffix(first["label"])} if first.get("label") else set())
    spatial = 2 if declared == {".npz"} else 3
    names = class_names(name)
    check_items(items, num_classes=len(names), class_names=names, spatial_dims=spatial, suffixes=declared)


def input_files(input_path: str | os.PathLike, option: str = "--input") -> list[Path]:
    """What ``svseg predict`` reads from ``input_path``, sorted by name: one image file; a DICOM series
    folder (the folder itself); or a folder's image files and its DICOM series subfolders (each
    subfolder holding DICOM files is one case). ``option`` names the path in messages.

    A DICOM series folder is returned as a folder path; :func:`svseg.io.dicom_to_nifti` reads it.
    Hidden entries (``.name``) are ignored.

    Raises:
        FileNotFoundError: the path does not exist, or the folder holds no image file and no DICOM series.
        svseg.errors.InputError: a single file of another type (a single DICOM slice: pass its series folder).
    """
    path = Path(input_path)
    if path.is_file():
        if is_dicom_file(path):
            raise InputError(path, "is one DICOM file; pass the folder of its series (svseg reads DICOM series folders)")
        if not path.name.lower().endswith(IMAGE_EXTENSIONS):
            raise InputError(path, f"file type {path.suffix or '(none)'} is not one svseg predicts "
                                   f"({', '.join(IMAGE_EXTENSIONS)}, or a DICOM series folder)")
        return [path]
    if path.is_dir():
        if is_dicom_folder(path):
            return [path]
        entries = sorted(p for p in path.iterdir() if not p.name.startswith(".") and (
            (p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS)) or (p.is_dir() and is_dicom_folder(p))))
        if not entries:
            raise FileNotFoundError(f"{option} {str(path)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)}) "
                                    "and no DICOM series folders.")
        return entries
    raise FileNotFoundError(f"{option} {str(path)!r} does not exist.")


_CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _input_case(path: Path) -> str:
    """The case id of an input: a DICOM series folder's name, else the file name without its image ending."""
    return path.name if path.is_dir() else case_name(path)


def input_cases(files: list[Path]) -> list[tuple[str, str | list[str]]]:
    """Cases of a list of inputs (:func:`input_files`): ``[(case, file or [channel files])]``.

    When every name ends in nnU-Net's ``_XXXX`` channel index (``case_0000.nii.gz``, ``case_0001.nii.gz``)
    the files are grouped into multi-channel cases named without it; otherwise each file is one case.
    A DICOM series folder is a file here, its case id the folder name.

    Raises:
        svseg.errors.InputError: a case whose channel files have a gap (e.g. ``_0001`` without ``_0000``),
            or two inputs of one case id (``ct.nii.gz`` and a ``ct/`` series folder), which would write
            one label map.
    """
    files = [Path(f) for f in files]
    seen: dict[str, Path] = {}
    for f in files:
        case = _input_case(f)
        if case in seen:
            raise InputError(f, f"has the case id {case!r} of {seen[case].name}; each input needs its own case id "
                                "(its label map is <case>_seg)")
        seen[case] = f
    names = {f: _CHANNEL_FILE.match(_input_case(f)) for f in files}
    if not files or not all(names.values()):
        return [(_input_case(f), str(f)) for f in files]
    groups: dict[str, dict[int, Path]] = {}
    for f, m in names.items():
        groups.setdefault(m["case"], {})[int(m["channel"])] = f
    out = []
    for case in sorted(groups):
        channels = groups[case]
        for c in range(max(channels) + 1):
            if c not in channels:
                f = channels[max(channels)]
                raise InputError(f.parent / f"{case}_{c:04d}{f.name[len(case) + 5:]}",
                                 f"channel file missing for case {case!r} ({len(channels)} of {max(channels) + 1} found)")
        ordered = [str(channels[c]) for c in sorted(channels)]
        out.append((case, ordered[0] if len(ordered) == 1 else ordered))
    return out


def inference_datalist(input_dir: str | os.PathLike | None, dataset_name: str,
                       data_root: str | os.PathLike | None, in_channels: int | None = None,
                       spatial_dims: int | None = None) -> list[dict]:
    """Images to predict: every image file in ``input_dir``, else the test split of the data set.

    Each image is checked before the network runs (:func:`svseg.data.check_items`: readable, finite,
    a 3D volume with ``in_channels`` channels).
    """
    if _root(input_dir) is None:
        return [{"image": d["image"], "case": d["case"]} for d in datalist(dataset_name, data_root, "test")]
    if not Path(str(input_dir)).is_dir():
        raise FileNotFoundError(f"input_dir {str(input_dir)!r} is not a folder.")
    files = input_files(str(input_dir), option="input_dir")
    for f in files:
        if f.is_dir():
            raise InputError(f, "is a DICOM series folder; the bundle reads image files: `svseg predict` (svseg.bundle."
                                "predict) converts DICOM series to NIfTI first")
    items = [{"image": image, "case": case} for case, image in input_cases(files)]
    dims = int(spatial_dims) if spatial_dims is not None else _spec(dataset_name).spatial_dims
    kinds = {f: (2 if f.lower().endswith(IMAGE_2D_SUFFIXES) else 3)
             for i in items for f in (i["image"] if isinstance(i["image"], list) else [i["image"]])}
    for f, k in kinds.items():
        if k != dims:
            raise InputError(f, f"is a {k}D file; the model was trained on {dims}D "
                                f"{'images' if dims == 2 else 'volumes'}")
    check_items(items, spatial_dims=dims, in_channels=in_channels)
    return items
