"""Decathlon-style datalists: find, read and write the ``training`` / ``validation`` / ``test`` lists.

A datalist is a JSON file (``dataset.json``) in the Medical Segmentation Decathlon style that
MONAI's :func:`monai.data.load_decathlon_datalist` reads::

    {"name": ..., "labels": {"0": "background", ...},
     "training":   [{"image": "./imagesTr/case0005.nii.gz", "label": "./labelsTr/case0005.nii.gz", "case": "case0005"}],
     "validation": [...],
     "test":       [...]}

Paths are relative to the file's folder. A TransUNet H5 volume holds image and label together; its
entries point at the same file with a ``::key`` selector (``./test_vol_h5/case0001.npy.h5::label``)
that :class:`svseg.data.readers.H5Reader` understands.

:func:`datalist_for` is what bundles call: with ``data_root=None`` it returns the demo data
(prepared on first use under ``$SVSEG_DATA_DIR/demo``); otherwise it reads ``dataset.json`` of the
folder, or builds the lists from a TransUNet folder (``train_npz`` / ``test_vol_h5`` / ``lists``)
when there is none.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Sequence

from svseg.data.demo import prepare_demo
from svseg.data.layout import relative_entry
from svseg.data.readers import split_key
from svseg.data.specs import get_dataset
from svseg.io import atomic_save_json, case_name

__all__ = [
    "SPLITS",
    "datalist_for",
    "resolve_dataset",
    "read_datalist",
    "write_datalist",
    "transunet_datalist",
    "DATALIST_NAME",
    "PREPARED_KEY",
    "intensity_applied",
]

logger = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
DATALIST_NAME = "dataset.json"
PREPARED_KEY = "prepared"


def intensity_applied(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a data set whose images already have its intensity rule applied.

    The marker is recorded, never guessed from the values: svseg's converters and the demo write
    ``"svseg": {"prepared": true, ...}`` into the ``dataset.json`` they produce; the published
    TransUNet layout (``train_npz/``, ``test_vol_h5/``) is prepared by definition (TransUNet's
    preprocessing clips and scales the CT). Any other folder holds raw images.
    """
    root = Path(folder)
    datalist = root / DATALIST_NAME
    if datalist.is_file():
        try:
            record = json.loads(datalist.read_text()).get("svseg") or {}
        except (OSError, ValueError, AttributeError):
            return False
        if not isinstance(record, dict):
            return False
        # svseg 0.1 recorded the rule it applied ("intensity"; the demo under "parameters") without the flag
        legacy = "intensity" in record or "intensity" in (record.get("parameters") or {})
        return record.get(PREPARED_KEY) is True or legacy
    return (root / "train_npz").is_dir() or (root / "test_vol_h5").is_dir()


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    return split


def _abs(base: Path, value: str) -> str:
    path, key = split_key(value)
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = base / p
    out = os.path.normpath(str(p))
    return f"{out}::{key}" if key else out


def _case_of(item: dict) -> str:
    if item.get("case"):
        return str(item["case"])
    path, _ = split_key(str(item["image"]))
    return re.sub(r"_0000$", "", case_name(path))


def read_datalist(path: str | os.PathLike, split: str = "training", check_files: bool = False) -> list[dict[str, Any]]:
    """Read one split of a Decathlon-style JSON datalist, with absolute paths and a ``case`` id.

    Args:
        path: the JSON file.
        split: ``training``, ``validation`` or ``test``; a split missing from the file is empty.
        check_files: raise if a listed file does not exist.

    Raises:
        FileNotFoundError: when the JSON (or, with ``check_files``, a listed file) is missing.
        ValueError: for an unreadable JSON or a malformed entry.
    """
    path = Path(path).expanduser()
    _check_split(split)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: datalist not found.")
    try:
        meta = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON: {e}") from e
    items = meta.get(split, [])
    if not isinstance(items, list):
        raise ValueError(f"{path}: {split!r} must be a list of entries.")
    base = path.parent.absolute()
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):  # Decathlon "test" lists may be plain image paths
            item = {"image": item}
        if not isinstance(item, dict) or "image" not in item:
            raise ValueError(f"{path}: entry {i} of {split!r} must be a dict with an 'image' path, got {item!r}.")
        new = dict(item)
        for key in ("image", "label"):
            if key in new and isinstance(new[key], str):
                new[key] = _abs(base, new[key])
                if check_files and not Path(split_key(new[key])[0]).exists():
                    raise FileNotFoundError(f"{path}: {split} entry {i} {key} file {new[key]} does not exist.")
        new["case"] = _case_of(new)
        out.append(new)
    return out


def write_datalist(
    path: str | os.PathLike,
    lists: dict[str, Sequence[dict[str, Any]]],
    labels: Sequence[str] | None = None,
    relative_to: str | os.PathLike | None = None,
    **fields: Any,
) -> Path:
    """Write a Decathlon-style datalist atomically.

    Args:
        path: the JSON file to write.
        lists: split name -> entries (``{"image", "label", "case", ...}``).
        labels: class names (index = label id) for the ``labels`` field.
        relative_to: store paths relative to this folder (default: the JSON's folder) when they lie
            inside it.
        fields: extra top-level fields (``name``, ``description``, ``modality``, ...).
    """
    path = Path(path).expanduser()
    base = Path(relative_to).expanduser().absolute() if relative_to is not None else path.parent.absolute()
    for split in lists:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected {SPLITS}.")
    doc: dict[str, Any] = dict(fields)
    if labels is not None:
        doc["labels"] = {str(i): n for i, n in enumerate(labels)}
    for split in SPLITS:
        doc[split] = [relative_entry(item, base) for item in lists.get(split, [])]
    doc.setdefault("numTraining", len(doc["training"]))
    doc.setdefault("numTest", len(doc["test"]))
    return atomic_save_json(doc, path)


def _read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def transunet_datalist(root: str | os.PathLike) -> dict[str, list[dict[str, Any]]]:
    """Build the split lists of a TransUNet folder (``train_npz``, ``test_vol_h5``, ``lists``).

    Training entries are npz slices (``{"image": "...npz::image", "label": "...npz::label",
    "case", "slice"}``); test (``lists/test_vol.txt``) and validation (``lists/val_vol.txt`` when
    present) entries are H5 volumes. Without list files every npz is training and every H5 test.

    Raises:
        FileNotFoundError: when the folder lacks ``train_npz`` and ``test_vol_h5``, or a listed file.
    """
    root = Path(root).expanduser().absolute()
    npz_dir, h5_dir, list_dir = root / "train_npz", root / "test_vol_h5", root / "lists"
    if not npz_dir.is_dir() and not h5_dir.is_dir():
        raise FileNotFoundError(f"{root}: neither train_npz/ nor test_vol_h5/ found; not a TransUNet folder.")
    if (list_dir / "train.txt").is_file():
        train_names = _read_list(list_dir / "train.txt")
    else:
        train_names = sorted(p.name[: -len(".npz")] for p in npz_dir.glob("*.npz")) if npz_dir.is_dir() else []
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    for name in train_names:
        name = name[: -len(".npz")] if name.endswith(".npz") else name
        f = npz_dir / f"{name}.npz"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: listed in lists/train.txt but missing.")
        m = re.match(r"(.+)_slice(\d+)$", name)
        case, sl = (m.group(1), int(m.group(2))) if m else (name, 0)
        out["training"].append({"image": f"{f}::image", "label": f"{f}::label", "case": case, "slice": sl})
    for split, list_name in (("test", "test_vol.txt"), ("validation", "val_vol.txt")):
        if (list_dir / list_name).is_file():
            names = _read_list(list_dir / list_name)
        elif split == "test" and h5_dir.is_dir():
            names = sorted(p.name[: -len(".npy.h5")] for p in h5_dir.glob("*.npy.h5"))
        else:
            names = []
        for name in names:
            name = name[: -len(".npy.h5")] if name.endswith(".npy.h5") else name
            f = h5_dir / f"{name}.npy.h5"
            if not f.is_file():
                raise FileNotFoundError(f"{f}: listed in lists/{list_name} but missing.")
            out[split].append({"image": f"{f}::image", "label": f"{f}::label", "case": name})
    return out


def _check_dataset_name(path: Path, name: str | None) -> None:
    """A datalist written by svseg records its data set; refuse to read it as another one."""
    if name is None:
        return
    try:
        recorded = json.loads(path.read_text()).get("svseg", {}).get("dataset")
    except (ValueError, OSError, AttributeError):
        return
    if recorded and str(recorded).lower() != str(name).lower():
        raise ValueError(
            f"{path} holds the {recorded!r} data set, not {name!r}; pass dataset name {recorded!r} "
            "(class names and intensity rules differ between data sets)."
        )


def resolve_dataset(name: str | None = None, data_root: str | os.PathLike | None = None):
    """The (spec, root) pair a run uses: without ``data_root`` the demo spec and the demo folder.

    ``name`` is the requested data set (``synapse`` ...); with ``data_root=None`` the demo data
    replace it (a bundle's default dataset is its paper's, but without data it runs on the demo).
    """
    if data_root is None:
        if name not in (None, "demo"):
            logger.info("no data_root given for dataset %r: using the svseg demo data instead", name)
        return get_dataset("demo"), prepare_demo()
    root = Path(data_root).expanduser().absolute()
    if not root.exists():
        raise FileNotFoundError(f"data_root {root} does not exist.")
    return get_dataset(name or "demo"), root


def datalist_for(name: str | None = "demo", data_root: str | os.PathLike | None = None, split: str = "training") -> list[dict[str, Any]]:
    """The entries of one split: ``[{"image": abs path, "label": abs path, "case": id, ...}]``.

    Args:
        name: data set name (``synapse``, ``lits``, ``acdc``, ``demo``); used for the folder
            checks and the log; ``data_root=None`` always means the demo data.
        data_root: folder with ``dataset.json`` (written by the svseg converters, or any Decathlon
            folder), or a TransUNet folder (``train_npz``, ``test_vol_h5``, ``lists``). A path to a
            JSON file is read directly.
        split: ``training``, ``validation`` or ``test``.

    Raises:
        FileNotFoundError: when ``data_root`` holds neither a datalist nor a TransUNet layout.
        ValueError: for an unknown split or data set.
    """
    _check_split(split)
    _, root = resolve_dataset(name, data_root)
    expected = name if data_root is not None else None  # no data_root: the demo, whatever the name
    if root.is_file():
        _check_dataset_name(root, expected)
        return read_datalist(root, split)
    if (root / DATALIST_NAME).is_file():
        _check_dataset_name(root / DATALIST_NAME, expected)
        return read_datalist(root / DATALIST_NAME, split)
    if (root / "train_npz").is_dir() or (root / "test_vol_h5").is_dir():
        return transunet_datalist(root)[split]
    raise FileNotFoundError(
        f"data_root {root} holds no {DATALIST_NAME} and no TransUNet layout (train_npz/, test_vol_h5/); "
        f"prepare it first, e.g. `python -m data_prep.{name or 'demo'} --help`."
    )
