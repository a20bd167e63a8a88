"""What a bundle's JSON cannot express itself: the data set's rules, looked up by name.

The bundles under ``bundles/`` spell out their recipe in JSON (network, transforms, loss,
optimiser, trainer, evaluator, handlers), as the MONAI model zoo does. What depends on the data
set (class names, the intensity range of prepared data, the case lists of each split, the
evaluation protocol it is published with) lives once, in :mod:`svseg.data`, and reaches the JSON
through the functions here (``"$sb.class_names(@dataset_name)"`` after ``"$import svseg.bundle as sb"``).

A data set is chosen by ``dataset_name`` alone; ``data_root`` only says where its prepared files
are. The class count therefore never depends on whether a ``data_root`` is given, so
``network_def`` always agrees with ``metadata.json``. The demo data is used only when asked for
(``dataset_name`` ``demo``, e.g. through ``configs/demo.json``); a paper's data set without a
``data_root`` is an error, never a silent switch to the demo.
"""
from __future__ import annotations

import os
from pathlib import Path

from svseg.data import check_items, datalist_for, file_suffix, get_dataset, intensity_applied
from svseg.errors import InputError
from svseg.io import case_name

__all__ = [
    "DEMO",
    "class_names",
    "num_classes",
    "protocol",
    "inference_mode",
    "prepared_range",
    "intensity_rule",
    "inputs_prepared",
    "datalist",
    "inference_datalist",
    "input_files",
    "IMAGE_EXTENSIONS",
]

DEMO = "demo"
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".h5", ".nrrd", ".mha")
_SPLIT_ORDER = {"training": ("training",), "validation": ("validation", "test"), "test": ("test", "validation")}


def _root(data_root: str | os.PathLike | None) -> str | None:
    return None if data_root in (None, "", "None", "null") else str(data_root)


def class_names(dataset_name: str) -> list[str]:
    """Class names of ``dataset_name`` (index = label id, background first)."""
    return [str(n) for n in get_dataset(str(dataset_name).lower()).class_names]


def num_classes(dataset_name: str) -> int:
    """Output channels of the network (background included) for ``dataset_name``."""
    return len(class_names(dataset_name))


def protocol(dataset_name: str) -> str:
    """The evaluation protocol ``dataset_name`` is published with (``transunet`` or ``standard``)."""
    return str(get_dataset(str(dataset_name).lower()).protocol or "standard")


def inference_mode(dataset_name: str) -> str:
    """Slice inference mode: ``transunet`` (cubic zoom, as the published Synapse/ACDC numbers) or ``resize``."""
    return "transunet" if protocol(dataset_name) == "transunet" else "resize"


def prepared_range(dataset_name: str) -> list[float]:
    """``[low, high]`` intensity range of ``dataset_name``'s prepared files (svseg's converters apply
    the data set's intensity rule once, when they write them)."""
    lo, hi = get_dataset(str(dataset_name).lower()).prepared_range
    return [float(lo), float(hi)]


def intensity_rule(dataset_name: str) -> dict:
    """The intensity rule of ``dataset_name`` (:attr:`svseg.data.DatasetSpec.intensity`)."""
    return dict(get_dataset(str(dataset_name).lower()).intensity)


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


def datalist(dataset_name: str, data_root: str | os.PathLike | None, split: str) -> list[dict]:
    """Items ``{"image", "label", "case"}`` of ``split`` (``training``, ``validation`` or ``test``), checked.

    ``validation`` falls back to ``test`` when a data set has no validation split (Synapse: the
    MSA2Net code selects on the test volumes), and ``test`` falls back to ``validation``.
    ``validation`` keeps only labelled items. Every item passes :func:`svseg.data.check_items`
    (readable, finite, 3D, label matching the image, label ids in the class list, one file type)
    before any training or evaluation starts; the results are cached per file.

    Raises:
        ValueError: unknown split; no ``data_root`` for a data set other than the demo; no items.
        svseg.data.InputError: a bad case, named with its file and the problem.
    """
    name = str(dataset_name).lower()
    if split not in _SPLIT_ORDER:
        raise ValueError(f"split must be one of {sorted(_SPLIT_ORDER)}, got {split!r}.")
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
        if split == "validation":
            items = [item for item in items if item.get("label")]
        if items:
            items = [dict(item, case=item.get("case") or case_name(str(item["image"]))) for item in items]
            _check(name, items)
            return items
    what = "labelled items (validation uses labelled cases only)" if split == "validation" else "items"
    raise ValueError(f"dataset {name!r} (data_root={root!r}) has no {what} in splits {list(_SPLIT_ORDER[split])}"
                     + (f": {'; '.join(errors)}" if errors else ""))


def _check(name: str, items: list[dict]) -> None:
    """The shared input check over ``items``: the first item's file types are the data set's (any other is
    refused), volumes are 3D (2D for TransUNet ``.npz`` slices)."""
    first = items[0]
    declared = {file_suffix(first["image"])} | ({file_suffix(first["label"])} if first.get("label") else set())
    spatial = 2 if declared == {".npz"} else 3
    names = class_names(name)
    check_items(items, num_classes=len(names), class_names=names, spatial_dims=spatial, suffixes=declared)


def input_files(input_path: str | os.PathLike, option: str = "--input") -> list[Path]:
    """One image file, or the image files of a folder (sorted); ``option`` names the path in messages.

    Raises:
        FileNotFoundError: the path does not exist, or the folder holds no image file.
        svseg.errors.InputError: a single file of another type.
    """
    path = Path(input_path)
    if path.is_file():
        if not path.name.lower().endswith(IMAGE_EXTENSIONS):
            raise InputError(path, f"file type {path.suffix or '(none)'} is not one svseg predicts "
                                   f"({', '.join(IMAGE_EXTENSIONS)})")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"{option} {str(path)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
        return files
    raise FileNotFoundError(f"{option} {str(path)!r} does not exist.")


def inference_datalist(input_dir: str | os.PathLike | None, dataset_name: str,
                       data_root: str | os.PathLike | None, in_channels: int | None = None) -> list[dict]:
    """Images to predict: every image file in ``input_dir``, else the test split of the data set.

    Each image is checked before the network runs (:func:`svseg.data.check_items`: readable, finite,
    a 3D volume with ``in_channels`` channels).
    """
    if _root(input_dir) is None:
        return [{"image": d["image"], "case": d["case"]} for d in datalist(dataset_name, data_root, "test")]
    if not Path(str(input_dir)).is_dir():
        raise FileNotFoundError(f"input_dir {str(input_dir)!r} is not a folder.")
    items = [{"image": str(f), "case": case_name(f)} for f in input_files(str(input_dir), option="input_dir")]
    check_items(items, spatial_dims=3, in_channels=in_channels)
    return items
