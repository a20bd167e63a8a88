"""``svseg plan``: check a user's data set, measure it, and write the rules a bundle trains it with.

The analogue of nnU-Net's ``extract_fingerprint`` + ``verify_dataset_integrity`` + plan step, for the
three layouts of :mod:`svseg.data.folders`:

1. **Check every case** with the shared input check (:func:`svseg.data.check.check_case`): readable,
   not empty, finite, the data set's dimensionality and channel count, the label's shape and affine
   equal to the image's, label ids among the declared ones. Every failing case is reported, one line
   each (:class:`DatasetCheckError`); nothing is written unless all pass.
2. **Measure**: spacing and shape, foreground intensity percentiles per channel, class frequencies,
   and the sizes of the objects (connected components per class, per image or per slice along the
   slice axis) as shares of the image in SvANet's size bins.
3. **Write** ``plan.json`` in the data set folder (atomically): the intensity rule (CT: clip to the
   foreground 0.5-99.5 percentiles, then z-score with the foreground mean and std; MR, microscopy
   and any other grey channel: per-image z-score; RGB: ImageNet mean/std; nnU-Net's ``noNorm`` and
   ``rescale_to_0_1`` channel names as nnU-Net reads them), 2D or 3D, the slice axis, the 2D input
   size per bundle, and the folds (the data set's own ``splits_final.json`` or Decathlon
   ``validation`` list, else a seeded 5-fold split). A data set written by an svseg converter may state its
   paper's rule (``dataset.json`` ``"svseg": {"intensity": {...}}``, e.g. AFMA's HU clip): it is used as it is.

A second run reuses ``plan.json`` while its fingerprint (the ``dataset.json`` bytes, every case file's
size and modification time, and the plan settings) is unchanged; any change re-plans.
:func:`dataset_spec` turns a folder into the :class:`~svseg.data.specs.DatasetSpec` the bundles read,
planning it first when needed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from svseg.data.check import check_case, read_checked
from svseg.data.folders import FolderDataset, open_folder
from svseg.data.specs import SVANET_BINS, DatasetSpec, get_dataset, list_datasets, size_bin, size_bin_labels
from svseg.data.transforms import check_rule
from svseg.errors import InputError
from svseg.io import atomic_save_json

__all__ = ["PLAN_NAME", "PLAN_VERSION", "BUNDLE_ROI", "DatasetCheckError", "plan_dataset", "load_plan",
           "dataset_spec", "is_dataset_folder", "plan_datalist"]

logger = logging.getLogger(__name__)

PLAN_NAME = "plan.json"
PLAN_VERSION = 1
#: bundle -> (its paper's 2D input size, whether the network needs exactly that size).
#: MSA2Net's MaxViT encoder is built for 224 x 224; the others take any multiple of 32.
BUNDLE_ROI: dict[str, tuple[int, bool]] = {
    "svanet": (512, False), "msa2net": (224, True), "afma": (512, False), "sa2net": (224, False), "msga": (256, False),
}
_SAMPLES_PER_CASE = 10000
_RGB_NAMES = {"r", "g", "b", "red", "green", "blue", "rgb"}
_loaded: dict[tuple, dict] = {}


class DatasetCheckError(InputError):
    """Several cases failed the check: ``errors`` holds one :class:`InputError` per case; the message one line each."""

    def __init__(self, root: Path, errors: Sequence[InputError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(str(e) for e in self.errors)
        super().__init__(root, f"{len(self.errors)} case(s) failed the check; nothing was written:\n{lines}")


def _stamp_files(folder: FolderDataset) -> list:
    files = []
    for item in folder.training + folder.test:
        for key in ("image", "label"):
            value = item.get(key)
            for f in value if isinstance(value, list) else ([value] if value else []):
                st = os.stat(f)
                files.append([os.path.relpath(f, folder.root), st.st_size, st.st_mtime_ns])
    return sorted(files)


def _fingerprint(folder: FolderDataset, settings: dict) -> str:
    source = folder.source.read_bytes() if folder.source is not None and folder.source.is_file() else b""
    splits = folder.root / "splits_final.json"
    doc = [PLAN_VERSION, folder.layout, hashlib.sha1(source).hexdigest(),
           hashlib.sha1(splits.read_bytes()).hexdigest() if splits.is_file() else None, settings, _stamp_files(folder)]
    return hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _rule_for(names: Sequence[str], stats: Sequence[dict], n_channels: int) -> dict:
    """The intensity rule from the channel names (nnU-Net's vocabulary) and the foreground statistics."""
    lowered = [n.strip().lower() for n in names]
    if n_channels == 3 and (not names or set(lowered) <= _RGB_NAMES):
        return {"rule": "rgb_imagenet", "max_value": 255.0 if max(s["max"] for s in stats) <= 255 else 65535.0}
    rules = []
    for c in range(n_channels):
        name = lowered[c] if c < len(lowered) else ""
        if name == "ct":
            s = stats[c]
            rules.append({"rule": "ct_zscore", "lower": s["p00_5"], "upper": s["p99_5"], "mean": s["mean_clipped"],
                          "std": s["std_clipped"]})
        elif name in ("nonorm", "none"):
            rules.append({"rule": "none"})
        elif name == "rescale_to_0_1":
            rules.append({"rule": "minmax", "lower_percentile": 0.0, "upper_percentile": 100.0})
        else:  # MR, microscopy, any other grey channel: per-image z-score
            rules.append({"rule": "zscore"})
    if all(r == rules[0] for r in rules):
        return rules[0]
    return {"rule": "per_channel", "channels": rules}


def _roi(in_plane: Sequence[float]) -> dict[str, list[int]]:
    side = max(in_plane) if in_plane else 224
    out = {}
    for bundle, (paper, fixed) in BUNDLE_ROI.items():
        s = paper if fixed else int(min(paper, max(64, 32 * math.ceil(side / 32))))
        out[bundle] = [s, s]
    return out


def _slice_axis(spacings: np.ndarray) -> int:
    """The through-plane axis of 3D data: the axis of the largest spacing when it is at least 3x the smallest
    (nnU-Net's anisotropy threshold), else the last axis (axial for the usual NIfTI orientation)."""
    median = np.median(spacings, axis=0)
    if median.max() >= 3 * median.min():
        return int(np.argmax(median))
    return 2


def _folds(folder: FolderDataset, n_folds: int, seed: int) -> tuple[list[dict], str]:
    cases = [item["case"] for item in folder.training]
    if folder.declared_folds:
        known = set(cases)
        for f in folder.declared_folds:
            unknown = sorted(set(f["training"] + f["validation"]) - known)
            if unknown:
                raise InputError(folder.source or folder.root, f"declared split names unknown cases {unknown[:5]}")
        return folder.declared_folds, "declared by the data set"
    if len(cases) < 2:
        raise InputError(folder.root, f"holds {len(cases)} labelled case(s); training needs at least 2 "
                                      "(one to train on, one to validate)")
    k = min(n_folds, len(cases))
    order = np.random.RandomState(seed).permutation(len(cases))
    ordered = [sorted(cases)[i] for i in order]
    folds = [{"training": sorted(c for j, c in enumerate(ordered) if j % k != f),
              "validation": sorted(c for j, c in enumerate(ordered) if j % k == f)} for f in range(k)]
    return folds, f"seeded {k}-fold split (numpy RandomState({seed}) permutation, case i of it in fold i % {k})"


def _object_shares(label: np.ndarray, n_classes: int, slice_axis: int | None) -> dict[int, list[float]]:
    """Per class, the share (%) of the image (2D) or of its slice (3D) of every connected component."""
    out: dict[int, list[float]] = {c: [] for c in range(1, n_classes)}
    planes = [label] if slice_axis is None else [np.take(label, k, axis=slice_axis) for k in range(label.shape[slice_axis])]
    for plane in planes:
        area = plane.size
        for c in range(1, n_classes):
            mask = plane == c
            if not mask.any():
                continue
            comp, n = ndimage.label(mask)
            sizes = np.bincount(comp.ravel())[1:]
            out[c].extend((100.0 * sizes / area).tolist())
    return out


def _check_all(folder: FolderDataset, n_channels: int) -> list[dict]:
    names = folder.class_names + (["ignore"] if folder.ignore_label is not None else [])
    suffixes = folder.suffixes
    rule = ("channel_names of dataset.json lists" if folder.channel_names else "the first image has")
    errors, summaries = [], []
    for item in folder.training:
        try:
            summaries.append(check_case(item["image"], item["label"], num_classes=len(names), class_names=names,
                                        in_channels=n_channels, spatial_dims=folder.spatial_dims, suffixes=suffixes,
                                        channels_rule=rule))
        except InputError as e:
            errors.append(e)
    for item in folder.test:
        try:
            check_case(item["image"], item.get("label"), num_classes=len(names), class_names=names,
                       in_channels=n_channels, spatial_dims=folder.spatial_dims, suffixes=suffixes, channels_rule=rule)
        except InputError as e:
            errors.append(e)
    if errors:
        raise DatasetCheckError(folder.root, errors)
    return summaries


def _spacing_of(path: Any) -> np.ndarray:
    """Voxel spacing of a 3D case from its header (NIfTI) or its reader's affine."""
    first = path[0] if isinstance(path, list) else path
    if str(first).lower().endswith((".nii", ".nii.gz")):
        return np.asarray(nib.load(str(first)).header.get_zooms()[:3], dtype=np.float64)
    affine = read_checked(first)[1]
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)) if affine is not None else np.ones(3)


def _measure(folder: FolderDataset, n_channels: int, seed: int, slice_axis: int | None) -> dict[str, Any]:
    rng = np.random.RandomState(seed)
    n_classes = len(folder.class_names)
    shapes, samples = [], [[] for _ in range(n_channels)]
    maxima = [-np.inf] * n_channels
    class_voxels = np.zeros(n_classes + 1, dtype=np.int64)
    cases_with = np.zeros(n_classes, dtype=np.int64)
    shares: dict[int, list[float]] = {c: [] for c in range(1, n_classes)}
    ignore_voxels = 0
    for item in folder.training:
        image = read_checked(item["image"])[0]
        label = read_checked(item["label"], mask=True)[0][0].astype(np.int64)
        shapes.append(label.shape)
        fg = label > 0
        if folder.ignore_label is not None:
            ignore_voxels += int((label == folder.ignore_label).sum())
            fg &= label != folder.ignore_label
        for c in range(n_channels):
            values = image[c][fg] if fg.any() else image[c].ravel()
            if values.size > _SAMPLES_PER_CASE:
                values = values[rng.choice(values.size, _SAMPLES_PER_CASE, replace=False)]
            samples[c].append(values.astype(np.float64))
            maxima[c] = max(maxima[c], float(image[c].max()))
        counts = np.bincount(label.ravel(), minlength=n_classes + 1)
        class_voxels += counts[: n_classes + 1]
        cases_with += counts[:n_classes] > 0
        for c, v in _object_shares(label, n_classes, slice_axis).items():
            shares[c].extend(v)
    stats = []
    for c in range(n_channels):
        v = np.concatenate(samples[c])
        lo, hi = np.percentile(v, [0.5, 99.5])
        clipped = np.clip(v, lo, hi)
        stats.append({"channel": folder.channel_names[c] if c < len(folder.channel_names) else f"channel_{c}",
                      "p00_5": float(lo), "p50": float(np.median(v)), "p99_5": float(hi), "mean": float(v.mean()),
                      "std": float(v.std()), "mean_clipped": float(clipped.mean()), "std_clipped": float(clipped.std()),
                      "max": maxima[c]})
    total = max(int(class_voxels[:n_classes].sum()), 1)
    return {"shapes": np.asarray(shapes), "stats": stats,
            "class_frequencies": {name: {"voxel_share": float(class_voxels[i] / total), "cases": int(cases_with[i])}
                                  for i, name in enumerate(folder.class_names)},
            "shares": shares, "ignore_voxels": ignore_voxels}


def _size_table(shares: dict[int, list[float]], class_names: Sequence[str]) -> dict[str, Any]:
    table: dict[str, Any] = {"bins": size_bin_labels(SVANET_BINS)}
    for c, values in shares.items():
        counts = [0] * len(SVANET_BINS)
        for v in values:
            counts[size_bin(v, SVANET_BINS)] += 1
        table[class_names[c]] = {"objects": len(values), "per_bin": counts,
                                 "median_share_percent": float(np.median(values)) if values else None}
    return table


def plan_dataset(dataset: str | os.PathLike, labels: Sequence[str] | None = None, n_folds: int = 5,
                 seed: int = 12345, force: bool = False) -> dict[str, Any]:
    """Check, measure and plan a data set folder; write ``<folder>/plan.json``; return the plan.

    Args:
        dataset: the data set folder or its ``dataset.json``.
        labels: class names for an image folder without ``dataset.json`` labels.
        n_folds: folds of the seeded split (when the data set declares none).
        seed: seed of that split and of the intensity sampling.
        force: plan again even when ``plan.json`` is up to date.

    Raises:
        DatasetCheckError: one or more cases failed the check (every one is listed).
        svseg.errors.InputError: the folder or its ``dataset.json`` is not a data set svseg reads.
    """
    folder = open_folder(dataset, labels=labels)
    settings = {"labels": list(labels) if labels else None, "n_folds": int(n_folds), "seed": int(seed)}
    fingerprint = _fingerprint(folder, settings)
    target = folder.root / PLAN_NAME
    if target.is_file():
        try:
            old = json.loads(target.read_text())
        except ValueError as e:
            raise InputError(target, f"is not valid JSON ({e}); delete it to plan again") from e
        if "svseg_plan_version" not in old:
            raise InputError(target, "exists and is not an svseg plan; move it away to plan this folder")
        if not force and old.get("fingerprint") == fingerprint:
            logger.info("%s is up to date: reusing it", target)
            return old
    n_channels = len(folder.channel_names) or None
    if n_channels is None:  # an image folder without channel_names: its first image decides
        n_channels = int(read_checked(folder.training[0]["image"])[0].shape[0])
    _check_all(folder, n_channels)
    folds, split_source = _folds(folder, n_folds, seed)
    spacings = np.asarray([_spacing_of(i["image"]) for i in folder.training]) if folder.spatial_dims == 3 else None
    axis = _slice_axis(spacings) if spacings is not None else None
    m = _measure(folder, n_channels, seed, axis)
    channel_names = folder.channel_names or (["R", "G", "B"] if n_channels == 3 else
                                             [f"channel_{c}" for c in range(n_channels)])
    rule = folder.intensity or _rule_for(folder.channel_names, m["stats"], n_channels)
    if folder.intensity is not None:
        try:
            check_rule(rule)
        except (ValueError, KeyError) as e:
            raise InputError(folder.source or folder.root, f"svseg.intensity is not a valid intensity rule: {e}") from e
    shapes = m["shapes"]
    if spacings is not None:
        in_plane = [float(np.median(shapes[:, i])) for i in range(3) if i != axis]
        spacing = {"median": np.median(spacings, axis=0).tolist(), "min": spacings.min(axis=0).tolist(),
                   "max": spacings.max(axis=0).tolist(), "unit": "mm"}
    else:
        in_plane = [float(np.median(shapes[:, i])) for i in range(2)]
        spacing = {"median": folder.spacing or None, "unit": "dataset.json spacing" if folder.spacing else "pixels"}
    modality = "RGB" if rule["rule"] == "rgb_imagenet" else ",".join(channel_names)
    plan = {
        "svseg_plan_version": PLAN_VERSION,
        "fingerprint": fingerprint,
        "settings": settings,
        "dataset": {"name": folder.name, "layout": folder.layout, "root": str(folder.root),
                    "source": str(folder.source) if folder.source else None},
        "class_names": folder.class_names,
        "protocol": folder.protocol,
        "ignore_label": folder.ignore_label,
        "ignore_voxels": m["ignore_voxels"],
        "channel_names": channel_names,
        "in_channels": n_channels,
        "modality": modality,
        "spatial_dims": folder.spatial_dims,
        "slice_axis": axis,
        "spacing": spacing,
        "median_shape": [float(v) for v in np.median(shapes, axis=0)],
        "intensity": rule,
        "intensity_stats": m["stats"],
        "class_frequencies": m["class_frequencies"],
        "object_sizes": _size_table(m["shares"], folder.class_names),
        "roi_size": _roi(in_plane),
        "folds": folds,
        "split_source": split_source,
        "cases": {"training": [_relative(i, folder.root) for i in folder.training],
                  "test": [_relative(i, folder.root) for i in folder.test]},
    }
    atomic_save_json(plan, target)
    logger.info("planned %s: %d training case(s), %d fold(s), %s", folder.root, len(folder.training), len(folds),
                rule["rule"])
    return json.loads(target.read_text())


def _relative(item: dict, root: Path) -> dict:
    out = dict(item)
    for key in ("image", "label"):
        value = out.get(key)
        if isinstance(value, list):
            out[key] = [os.path.relpath(v, root) for v in value]
        elif value:
            out[key] = os.path.relpath(value, root)
    return out


def _folder_of(dataset: str | os.PathLike) -> Path:
    path = Path(dataset).expanduser().absolute()
    return path.parent if path.is_file() else path


def load_plan(dataset: str | os.PathLike, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The data set's plan: ``plan.json`` when up to date, else planned now (:func:`plan_dataset`).

    Checked once per process and folder (the plan's fingerprint against the files).
    """
    root = _folder_of(dataset)
    target = root / PLAN_NAME
    key = (str(root), target.stat().st_mtime_ns if target.is_file() else None, tuple(labels or ()))
    if key not in _loaded:
        plan = plan_dataset(dataset, labels=labels) if labels or not target.is_file() else None
        if plan is None:
            saved = json.loads(target.read_text())
            settings = saved.get("settings", {})
            plan = plan_dataset(dataset, labels=settings.get("labels"), n_folds=settings.get("n_folds", 5),
                                seed=settings.get("seed", 12345))
        key = (str(root), target.stat().st_mtime_ns, tuple(labels or ()))
        _loaded[key] = plan
    return _loaded[key]


def is_dataset_folder(name: Any) -> bool:
    """Whether a ``dataset_name`` is a path (a data set folder or its ``dataset.json``) rather than a known name."""
    if isinstance(name, DatasetSpec) or name is None:
        return False
    text = str(name)
    if text.strip().lower() in list_datasets():
        return False
    return os.sep in text or text.endswith(".json") or Path(text).expanduser().exists()


def dataset_spec(name: str | os.PathLike | DatasetSpec) -> DatasetSpec:
    """The rules of a data set: a known name (``synapse``, ``lits``, ``acdc``, ``demo``) or a data set folder.

    A folder is planned first when its ``plan.json`` is missing or out of date (:func:`load_plan`).

    Raises:
        ValueError: an unknown name that is not a path either.
    """
    if not is_dataset_folder(name):
        try:
            return get_dataset(name)
        except ValueError as e:
            raise ValueError(f"{e} Or give a data set folder (nnU-Net v2 raw, Decathlon, or images/ + masks/).") from e
    plan = load_plan(name)
    return DatasetSpec(
        name=str(_folder_of(name)),
        title=str(plan["dataset"]["name"]),
        class_names=tuple(plan["class_names"]),
        modality=str(plan["modality"]),
        intensity=plan["intensity"],
        prepared_range=(-math.inf, math.inf),
        splits={"training": tuple(plan["folds"][0]["training"]), "validation": tuple(plan["folds"][0]["validation"]),
                "test": tuple(i["case"] for i in plan["cases"]["test"])},
        roi_size=tuple(plan["roi_size"]["sa2net"]),
        protocol=str(plan.get("protocol", "standard")),
        slice_axis=int(plan["slice_axis"] if plan["slice_axis"] is not None else 2),
        reference=f"svseg plan of {plan['dataset']['root']} ({plan['dataset']['layout']} layout)",
        in_channels=int(plan["in_channels"]),
        spatial_dims=int(plan["spatial_dims"]),
        roi_sizes={k: tuple(v) for k, v in plan["roi_size"].items()},
        folds=tuple(plan["folds"]),
        root=str(_folder_of(name)),
        spacing_2d=tuple(plan["spacing"]["median"]) if plan["spatial_dims"] == 2 and plan["spacing"]["median"] else None,
    )


def plan_datalist(dataset: str | os.PathLike, split: str, fold: int | str = 0) -> list[dict[str, Any]]:
    """Items ``{"image", "label", "case"}`` (absolute paths) of a planned data set.

    ``training`` / ``validation``: the fold's cases (``fold="all"``: every labelled case in both, as
    nnU-Net's ``all``); ``test``: the ``imagesTs`` images (with labels when ``labelsTs`` has them).
    """
    plan = load_plan(dataset)
    root = _folder_of(dataset)
    if split == "test":
        items = plan["cases"]["test"]
    else:
        if str(fold) == "all":
            wanted = {i["case"] for i in plan["cases"]["training"]}
        else:
            try:
                f = int(fold)
            except (TypeError, ValueError) as e:
                raise ValueError(f"fold must be an integer or 'all', got {fold!r}.") from e
            if not 0 <= f < len(plan["folds"]):
                raise ValueError(f"fold must be in 0..{len(plan['folds']) - 1} or 'all' for {root}, got {fold!r}.")
            wanted = set(plan["folds"][f][split])
        items = [i for i in plan["cases"]["training"] if i["case"] in wanted]
    out = []
    for item in items:
        new = dict(item)
        for key in ("image", "label"):
            value = new.get(key)
            if isinstance(value, list):
                new[key] = [str(root / v) for v in value]
            elif value:
                new[key] = str(root / value)
        out.append(new)
    return out
