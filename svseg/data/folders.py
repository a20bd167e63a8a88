"""A user's data set folder, read as it is: the nnU-Net v2 raw layout, a Decathlon ``dataset.json``, or an
``images/`` + ``masks/`` folder pair.

* **nnU-Net v2 raw** (``dataset.json`` with ``channel_names``/``file_ending``): ``imagesTr/<case>_0000<ending>``
  (one file per channel, ``_0000``, ``_0001``, ...), ``labelsTr/<case><ending>``, optional ``imagesTs/``;
  ``labels`` is ``{name: id}`` with an optional ``ignore`` id; ``numTraining`` must match; a
  ``splits_final.json`` next to ``dataset.json`` gives the folds.
* **Medical Segmentation Decathlon** (``dataset.json`` with a ``training`` list): ``labels`` is
  ``{"0": "background", ...}``, ``modality`` names the channels, ``test`` lists images; a ``validation``
  list, when present, is the declared split.
* **Image folder**: ``images/<stem>.<ext>`` and ``masks/<stem>.<ext>`` with matching stems, 2D (png, jpg,
  tif, bmp; grey or RGB) or 3D (nii.gz, nrrd, mha). Class names come from a small ``dataset.json``
  (``{"labels": {"background": 0, "nucleus": 1}}``, optional ``channel_names`` and ``spacing``) or from
  ``labels=`` (``svseg plan --labels``); masks follow :mod:`svseg.data.images2d`'s rule.

:func:`open_folder` returns a :class:`FolderDataset` or raises one :class:`~svseg.errors.InputError` naming
the file and the problem. It reads no image; :mod:`svseg.data.plan` checks and measures every case.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from svseg.data.check import file_list, file_suffix
from svseg.data.datalist import read_datalist
from svseg.io import IMAGE_2D_SUFFIXES, is_image_2d
from svseg.errors import InputError
from svseg.io import case_name

__all__ = ["FolderDataset", "open_folder", "IMAGE_3D_SUFFIXES", "DATASET_JSON"]

DATASET_JSON = "dataset.json"
#: 3D file endings an image folder may hold
IMAGE_3D_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
_ALL = IMAGE_2D_SUFFIXES + IMAGE_3D_SUFFIXES
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass
class FolderDataset:
    """What a data set folder declares, and its cases (absolute paths; several files = channels)."""

    root: Path
    layout: str
    name: str
    class_names: list[str]
    channel_names: list[str]
    spatial_dims: int
    training: list[dict[str, Any]]
    test: list[dict[str, Any]] = field(default_factory=list)
    ignore_label: int | None = None
    file_ending: str | None = None
    declared_folds: list[dict[str, list[str]]] | None = None
    spacing: list[float] | None = None
    source: Path | None = None
    protocol: str = "standard"
    intensity: dict | None = None

    @property
    def suffixes(self) -> set[str]:
        """The file endings of the data set's files (lower case)."""
        out = set()
        for item in self.training + self.test:
            for key in ("image", "label"):
                for f in file_list(item.get(key)):
                    out.add(file_suffix(f))
        return out


def _read_json(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except UnicodeDecodeError as e:
        raise InputError(path, f"is not a text JSON file ({e.reason})") from e
    except ValueError as e:
        raise InputError(path, f"is not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise InputError(path, f"must hold a JSON object, got {type(doc).__name__}")
    return doc


def _labels(doc_labels: Any, source: Path) -> tuple[list[str], int | None]:
    """Class names by id and the ignore id, from nnU-Net ``{name: id}`` or Decathlon ``{"id": name}`` labels."""
    if not isinstance(doc_labels, dict) or not doc_labels:
        raise InputError(source, "'labels' must be a non-empty object ({name: id} or {\"id\": name})")
    by_id: dict[int, str] = {}
    ignore = None
    if all(str(k).isdigit() for k in doc_labels):  # Decathlon: {"0": "background"}
        for k, v in doc_labels.items():
            by_id[int(k)] = str(v)
    else:
        for name, value in doc_labels.items():
            if isinstance(value, (list, tuple)):
                raise InputError(source, f"label {name!r} is a region {value}; region-based labels are not supported")
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(source, f"label {name!r} must have an integer id, got {value!r}")
            if str(name).lower() == "ignore":
                ignore = int(value)
                continue
            if value in by_id:
                raise InputError(source, f"labels {by_id[value]!r} and {name!r} share the id {value}")
            by_id[int(value)] = str(name)
    ids = sorted(by_id)
    if ids != list(range(len(ids))):
        raise InputError(source, f"label ids must be consecutive from 0 (background), got {ids}")
    if len(ids) < 2:
        raise InputError(source, "labels must name the background (0) and at least one class")
    if ignore is not None and ignore != len(ids):
        raise InputError(source, f"the ignore label must be the highest id ({len(ids)}), got {ignore}")
    return [by_id[i] for i in ids], ignore


def _channel_names(value: Any, source: Path) -> list[str]:
    if not isinstance(value, dict) or not value:
        raise InputError(source, "'channel_names' (or 'modality') must be a non-empty object {\"0\": \"CT\", ...}")
    keys = sorted(int(k) for k in value if str(k).isdigit())
    if keys != list(range(len(value))):
        raise InputError(source, f"channel_names keys must be 0..{len(value) - 1}, got {sorted(value)}")
    return [str(value[str(k)] if str(k) in value else value[k]) for k in keys]


def _files(folder: Path, endings: Sequence[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(tuple(endings)))


def _spatial_dims(paths: Sequence[Path], kind: str) -> int:
    """2 or 3 by file ending; a data set mixing 2D and 3D files is refused, naming the odd file."""
    two = [p for p in paths if is_image_2d(p)]
    three = [p for p in paths if not is_image_2d(p)]
    if two and three:
        odd = three[0] if len(two) >= len(three) else two[0]
        what = "a 3D file" if odd in three else "a 2D image file"
        raise InputError(odd, f"is {what} in a {'2D' if odd in three else '3D'} {kind} "
                              f"({len(two)} 2D, {len(three)} 3D files)")
    return 2 if two else 3


def _nnunet_cases(folder: Path, ending: str, n_channels: int) -> dict[str, list[str]]:
    """``case -> [channel files]`` of an nnU-Net images folder.

    Channel files are numbered from ``_0000`` without gaps; there may be fewer files than ``channel_names``
    entries when a file holds several channels (nnU-Net's RGB PNG: one ``_0000.png``, channel names R, G, B):
    the input check then compares the channels read with ``channel_names``. A gap, or more files than channel
    names, is an error.
    """
    cases: dict[str, dict[int, Path]] = {}
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.name.startswith(".") or not p.is_file():
            continue
        if not p.name.endswith(ending):
            raise InputError(p, f"file ending is not the data set's file_ending {ending!r}")
        m = _CHANNEL.match(p.name[: -len(ending)])
        if m is None:
            raise InputError(p, f"image name must be <case>_XXXX{ending} (XXXX = 4-digit channel, e.g. _0000)")
        cases.setdefault(m["case"], {})[int(m["channel"])] = p
    out = {}
    for case, channels in cases.items():
        expected = list(range(max(channels) + 1))
        missing = [c for c in expected if c not in channels]
        if missing:
            raise InputError(folder / f"{case}_{missing[0]:04d}{ending}",
                             f"channel file missing for case {case!r} (channel_names lists {n_channels} channel(s))")
        if len(channels) > n_channels:
            extra = channels[max(channels)]
            raise InputError(extra, f"case {case!r} has {len(channels)} channel files, channel_names lists {n_channels}")
        out[case] = [str(channels[c]) for c in expected]
    return out


def _open_nnunet(root: Path, doc: dict, source: Path) -> FolderDataset:
    ending = doc.get("file_ending")
    if not isinstance(ending, str) or not ending.startswith("."):
        raise InputError(source, f"'file_ending' must be a string like '.nii.gz', got {ending!r}")
    channels = _channel_names(doc.get("channel_names", doc.get("modality")), source)
    class_names, ignore = _labels(doc.get("labels"), source)
    images = _nnunet_cases(root / "imagesTr", ending, len(channels))
    labels = {p.name[: -len(ending)]: p for p in _files(root / "labelsTr", [ending])}
    for p in _files(root / "labelsTr", _ALL):
        if not p.name.endswith(ending):
            raise InputError(p, f"file ending is not the data set's file_ending {ending!r}")
    if not images and not labels:
        raise InputError(root / "imagesTr", f"holds no training images (<case>_0000{ending})")
    for case in sorted(images):
        if case not in labels:
            raise InputError(images[case][0], f"has no label file labelsTr/{case}{ending}")
    for case in sorted(labels):
        if case not in images:
            raise InputError(labels[case], f"has no image imagesTr/{case}_0000{ending}")
    n = doc.get("numTraining")
    if n is not None and int(n) != len(labels):
        raise InputError(source, f"numTraining is {n} but labelsTr holds {len(labels)} cases")
    training = [{"image": _one(images[c]), "label": str(labels[c]), "case": c} for c in sorted(labels)]
    test_cases = _nnunet_cases(root / "imagesTs", ending, len(channels)) if (root / "imagesTs").is_dir() else {}
    test_labels = {p.name[: -len(ending)]: p for p in _files(root / "labelsTs", [ending])}
    test = [dict({"image": _one(test_cases[c]), "case": c}, **({"label": str(test_labels[c])} if c in test_labels else {}))
            for c in sorted(test_cases)]
    folds = _splits_final(root / "splits_final.json")
    dims = 2 if is_image_2d(f"x{ending}") else 3
    return FolderDataset(root=root, layout="nnunet", name=str(doc.get("name") or root.name), class_names=class_names,
                         channel_names=channels, spatial_dims=dims, training=training, test=test, ignore_label=ignore,
                         file_ending=ending, declared_folds=folds, spacing=_spacing(doc, source), source=source)


def _one(files: list[str]) -> str | list[str]:
    return files[0] if len(files) == 1 else files


def _splits_final(path: Path) -> list[dict[str, list[str]]] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        folds = [{"training": [str(c) for c in f["train"]], "validation": [str(c) for c in f["val"]]} for f in doc]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(path, f"must be a list of {{\"train\": [...], \"val\": [...]}} folds ({e})") from e
    return folds or None


def _spacing(doc: dict, source: Path) -> list[float] | None:
    value = doc.get("spacing")
    if value is None:
        return None
    try:
        spacing = [float(v) for v in value]
    except (TypeError, ValueError) as e:
        raise InputError(source, f"'spacing' must be a list of numbers, got {value!r}") from e
    if not spacing or any(s <= 0 for s in spacing):
        raise InputError(source, f"'spacing' must hold positive numbers, got {value!r}")
    return spacing


def _open_decathlon(root: Path, doc: dict, source: Path) -> FolderDataset:
    class_names, ignore = _labels(doc.get("labels"), source)
    channels = _channel_names(doc.get("modality", doc.get("channel_names", {"0": "image"})), source)
    try:
        training = read_datalist(source, "training")
        validation = read_datalist(source, "validation")
        test = read_datalist(source, "test")
    except (ValueError, FileNotFoundError) as e:
        raise InputError(source, str(e)) from e
    labelled = [item for item in training + validation if item.get("label")]
    if not labelled:
        raise InputError(source, "'training' lists no labelled case")
    for item in labelled + test:
        for f in file_list(item["image"]) + file_list(item.get("label")):
            if not Path(f).exists():
                raise InputError(f, f"listed in {source.name} but missing")
    folds = None
    if validation:
        folds = [{"training": [i["case"] for i in training], "validation": [i["case"] for i in validation]}]
    files = [Path(f) for item in labelled for f in file_list(item["image"])]
    return FolderDataset(root=root, layout="decathlon", name=str(doc.get("name") or root.name), class_names=class_names,
                         channel_names=channels, spatial_dims=_spatial_dims(files, "data set"),
                         training=[{"image": i["image"], "label": i["label"], "case": i["case"]} for i in labelled],
                         test=[{"image": i["image"], "case": i["case"]} for i in test], ignore_label=ignore,
                         declared_folds=folds, spacing=_spacing(doc, source), source=source)


def _open_image_folder(root: Path, doc: dict, source: Path | None, labels: Sequence[str] | None) -> FolderDataset:
    image_dir = root / "images"
    mask_dir = next((root / n for n in ("masks", "labels") if (root / n).is_dir()), root / "masks")
    images, masks = _files(image_dir, _ALL), _files(mask_dir, _ALL)
    if not images:
        raise InputError(image_dir, f"holds no image files ({', '.join(_ALL)})")
    kind = _spatial_dims(images + masks, "data set")
    by_stem: dict[str, Path] = {}
    for p in masks:
        stem = case_name(p)
        if stem in by_stem:
            raise InputError(p, f"two masks share the stem {stem!r} ({by_stem[stem].name})")
        by_stem[stem] = p
    training, seen = [], set()
    for p in images:
        stem = case_name(p)
        if stem in seen:
            raise InputError(p, f"two images share the stem {stem!r}")
        seen.add(stem)
        if stem not in by_stem:
            raise InputError(p, f"has no mask {mask_dir.name}/{stem}.* with the same stem")
        training.append({"image": str(p), "label": str(by_stem[stem]), "case": stem})
    for stem, p in sorted(by_stem.items()):
        if stem not in seen:
            raise InputError(p, f"has no image images/{stem}.* with the same stem")
    if labels:
        class_names, ignore = [str(n) for n in labels], None
        if len(class_names) < 2:
            raise InputError(root, "--labels must name the background and at least one class")
    elif "labels" in doc:
        class_names, ignore = _labels(doc["labels"], source or root)
    else:
        raise InputError(root, "an image folder needs class names: add a dataset.json with "
                               "{\"labels\": {\"background\": 0, \"<class>\": 1}} or pass --labels background <class>")
    channels = _channel_names(doc["channel_names"], source) if "channel_names" in doc else []
    return FolderDataset(root=root, layout="images", name=str(doc.get("name") or root.name), class_names=class_names,
                         channel_names=channels, spatial_dims=kind, training=training, ignore_label=ignore,
                         spacing=_spacing(doc, source or root), source=source)


def open_folder(dataset: str | os.PathLike, labels: Sequence[str] | None = None) -> FolderDataset:
    """Read a data set folder (or its ``dataset.json``) in one of the three layouts.

    Args:
        dataset: the folder, or the path of its ``dataset.json``.
        labels: class names by id (background first) for an image folder without ``dataset.json``
            labels; they replace the file's labels when both are given.

    Raises:
        FileNotFoundError: the path does not exist.
        svseg.errors.InputError: anything else, naming the file and the problem.
    """
    path = Path(dataset).expanduser().absolute()
    if not path.exists():
        raise FileNotFoundError(f"data set {str(dataset)!r} does not exist.")
    if path.is_file():
        source, root = path, path.parent
    else:
        root, source = path, path / DATASET_JSON
    if not any(root.iterdir()):
        raise InputError(root, "is an empty folder, not a data set (expected dataset.json with imagesTr/ + labelsTr/, "
                               "or images/ + masks/)")
    doc = _read_json(source) if source.is_file() else {}
    folder = _open_layout(root, doc, source, labels)
    recorded = doc.get("svseg") if isinstance(doc.get("svseg"), dict) else {}
    if recorded.get("protocol"):  # a data set written by an svseg converter names its paper's protocol
        folder.protocol = str(recorded["protocol"])
    if recorded.get("intensity") is not None:  # ... and its paper's intensity rule, which then replaces the plan's
        if not isinstance(recorded["intensity"], dict):
            raise InputError(source, f"svseg.intensity must be an intensity rule object, got {recorded['intensity']!r}")
        folder.intensity = dict(recorded["intensity"])
    return folder


def _open_layout(root: Path, doc: dict, source: Path, labels: Sequence[str] | None) -> FolderDataset:
    if "file_ending" in doc or "channel_names" in doc and (root / "imagesTr").is_dir():
        return _open_nnunet(root, doc, source)
    if isinstance(doc.get("training"), list):
        return _open_decathlon(root, doc, source)
    if (root / "images").is_dir():
        return _open_image_folder(root, doc, source if source.is_file() else None, labels)
    raise InputError(root, "is not a data set folder svseg reads: expected dataset.json (nnU-Net v2 with "
                           "file_ending, or Decathlon with a training list) or images/ + masks/")
