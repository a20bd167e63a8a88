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

from svseg.data import datalist_for, get_dataset
from svseg.io import case_name

__all__ = [
    "DEMO",
    "class_names",
    "num_classes",
    "protocol",
    "inference_mode",
    "prepared_range",
    "datalist",
    "inference_datalist",
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


def datalist(dataset_name: str, data_root: str | os.PathLike | None, split: str) -> list[dict]:
    """Items ``{"image", "label", "case"}`` of ``split`` (``training``, ``validation`` or ``test``).

    ``validation`` falls back to ``test`` when a data set has no validation split (Synapse: the
    MSA2Net code selects on the test volumes), and ``test`` falls back to ``validation``.

    Raises:
        ValueError: unknown split; no ``data_root`` for a data set other than the demo; no items.
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
        if items:
            return [dict(item, case=item.get("case") or case_name(str(item["image"]))) for item in items]
    raise ValueError(f"dataset {name!r} (data_root={root!r}) has no items in splits {list(_SPLIT_ORDER[split])}: {errors}")


def inference_datalist(input_dir: str | os.PathLike | None, dataset_name: str,
                       data_root: str | os.PathLike | None) -> list[dict]:
    """Images to predict: every image file in ``input_dir``, else the test split of the data set."""
    if _root(input_dir) is None:
        return [{"image": d["image"], "case": d["case"]} for d in datalist(dataset_name, data_root, "test")]
    folder = Path(str(input_dir))
    if not folder.is_dir():
        raise FileNotFoundError(f"input_dir {str(folder)!r} is not a folder.")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise FileNotFoundError(f"input_dir {str(folder)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
    return [{"image": str(folder / f), "case": case_name(f)} for f in files]
