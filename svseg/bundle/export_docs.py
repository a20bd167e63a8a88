"""The words of an exported bundle (:mod:`svseg.bundle.export`): ``metadata.json``, ``docs/README.md``,
``docs/data_license.txt`` and ``LICENSE``, written from the training run's own files.

* :func:`dataset_facts`: what is known about the training data (a named data set's spec, or a data set
  folder's ``plan.json`` and ``dataset.json`` read as they are: nothing is planned again);
* :func:`bundle_metadata`: the bundle's ``metadata.json`` made true for the trained model: its name, task,
  classes, the ``network_data_format`` of its real input (channels, size, modality) and output (classes), its
  validation and test figures, the ``svseg_export`` entry;
* :func:`readme`, :func:`data_license`, :func:`license_text`.

MONAI has no writer for these: a model-zoo bundle's docs are written by hand.
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import svseg
from svseg import __version__
from svseg.data import get_dataset, is_dataset_folder

__all__ = ["DEMO_LICENCE", "EXPORT_KEY", "bundle_metadata", "data_license", "dataset_facts", "license_text",
           "number_text", "preprocessing_text", "read_json", "readme", "run_metrics"]

logger = logging.getLogger(__name__)

EXPORT_KEY = "svseg_export"
"""The ``metadata.json`` entry that marks a bundle written by :func:`svseg.bundle.export.export_run`."""


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` when it does not exist or does not parse (logged)."""
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        logger.warning("%s is not valid JSON; the exported docs leave it out", path)
        return None


def dataset_facts(info: Mapping[str, Any]) -> dict[str, Any]:
    """What is known about the training data: a named data set's spec, or a data set folder's ``plan.json`` and
    ``dataset.json`` as they are (read only: nothing is planned again)."""
    name = str(info.get("dataset_name", ""))
    facts: dict[str, Any] = {"name": name, "named": False, "title": name, "modality": "", "channels": [],
                             "licence": None, "reference": "", "cases": None}
    if name and not is_dataset_folder(name):
        try:
            spec = get_dataset(name)
        except ValueError:
            return facts
        facts.update(named=True, title=spec.title, modality=spec.modality, reference=spec.reference)
        return facts
    folder = Path(name)
    folder = folder.parent if folder.name.endswith(".json") else folder
    plan = read_json(folder / "plan.json") or {}
    described = read_json(folder / "dataset.json") or {}
    if not plan and not described:
        facts["title"] = f"{folder.name} (its folder {folder} is not readable here)"
        return facts
    facts["title"] = str(plan.get("dataset", {}).get("name") or described.get("name") or folder.name)
    facts["modality"] = str(plan.get("modality", ""))
    facts["channels"] = [str(c) for c in plan.get("channel_names", [])]
    facts["cases"] = len(plan.get("cases", {}).get("training", [])) or None
    facts["licence"] = described.get("licence") or described.get("license")
    facts["reference"] = str(described.get("reference", ""))
    return facts


def bundle_metadata(meta: dict, info: Mapping[str, Any], dataset: Mapping[str, Any], entry: dict, progress: list,
              summary: Mapping[str, Any] | None) -> dict:
    names = [str(n) for n in info.get("class_names") or []]
    k = int(info.get("num_classes", len(names)))
    names = names if len(names) == k else [f"class_{i}" for i in range(k)]
    c = int(info.get("in_channels", 1))
    roi = [int(v) for v in info.get("roi_size", [])]
    channels = dataset["channels"] if len(dataset["channels"]) == c else (["image"] if c == 1 else
                                                                          [f"channel_{i}" for i in range(c)])
    modality = dataset["modality"] or "unknown"
    meta = json.loads(json.dumps(meta))
    version = str(meta.get("version", "0.1.0"))
    meta["changelog"] = {version: f"svseg export of run {entry['run']} ({entry['network']} trained on "
                                  f"{dataset['title']})", **{k2: v for k2, v in meta.get("changelog", {}).items()
                                                              if k2 != version}}
    meta["name"] = f"{entry['network']} trained on {dataset['title']}"
    meta["task"] = (f"{'2D' if int(info.get('spatial_dims', 3)) == 2 else '2D slice-wise 3D'} segmentation of "
                    f"{', '.join(names[1:])} ({modality})")
    meta["description"] = (f"{entry['network']} ({entry['bundle']} bundle) trained by svseg on {dataset['title']}, "
                           f"exported with its preprocessing baked into configs/inference.json. "
                           f"{preprocessing_text(info)}")
    meta["data_source"] = str(dataset["title"]) + (f" ({dataset['reference']})" if dataset["reference"] else "")
    meta["data_type"] = "NIfTI/NRRD/MHA volumes or 2D images, as svseg predict reads them"
    meta["image_classes"] = f"{c} channel(s) {channels}, {modality}; {preprocessing_text(info)}"
    meta["label_classes"] = ", ".join(f"{i} {n}" for i, n in enumerate(names))
    meta["pred_classes"] = f"{k} channels, logits of the {k} label classes"
    meta["eval_metrics"] = run_metrics(progress, summary)
    meta["required_packages_version"] = {**meta.get("required_packages_version", {}), "svseg": __version__}
    meta["intended_use"] = "Research only, not for clinical use"
    fmt = meta.setdefault("network_data_format", {})
    fmt["inputs"] = {"image": {
        "type": "image", "format": "magnitude", "modality": modality, "num_channels": c, "spatial_shape": roi,
        "dtype": "float32", "value_range": [], "is_patch_data": False,
        "channel_def": {str(i): n for i, n in enumerate(channels)}}}
    fmt["outputs"] = {"pred": {
        "type": "image", "format": "segmentation", "num_channels": k, "spatial_shape": roi, "dtype": "float32",
        "value_range": [], "is_patch_data": False, "channel_def": {str(i): n for i, n in enumerate(names)}}}
    meta[EXPORT_KEY] = {**entry, "dataset_name": str(info.get("dataset_name", "")), "fold": info.get("fold"),
                        "preprocessing": {key: info[key] for key in ("intensity_rule", "prepared_range", "intensity_mean",
                                                                      "intensity_std", "roi_size", "slice_axis",
                                                                      "spatial_dims", "inference_mode") if key in info}}
    return meta


def preprocessing_text(info: Mapping[str, Any]) -> str:
    rule = dict(info.get("intensity_rule") or {})
    name = rule.pop("rule", "none")
    params = ", ".join(f"{k}={v}" for k, v in rule.items())
    roi = "x".join(str(int(v)) for v in info.get("roi_size", []))
    where = ("2D images" if int(info.get("spatial_dims", 3)) == 2 else
             f"2D slices along axis {info.get('slice_axis', 2)} of each volume")
    return (f"Intensity rule {name}{f' ({params})' if params else ''} unless the input folder is a data set svseg "
            f"prepared, clipped to {info.get('prepared_range')}, then (x - {info.get('intensity_mean')}) / "
            f"{info.get('intensity_std')}; {where}, resized to {roi} ({info.get('inference_mode', 'resize')} mode).")


def run_metrics(progress: list, summary: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    scored = [p for p in progress if isinstance(p, dict) and isinstance(p.get("val_metric"), (int, float))]
    if scored:
        best = max(scored, key=lambda p: p["val_metric"])
        out["val_mean_dice_best"] = float(best["val_metric"])
        out["val_mean_dice_best_epoch"] = int(best.get("epoch", 0))
    if summary and isinstance(summary.get("overall"), dict):
        for key in ("dice", "hd95"):
            value = summary["overall"].get(key)
            if isinstance(value, (int, float)):
                out[f"test_mean_{key}"] = float(value)
    return out


def license_text() -> str:
    """The project's LICENSE: from the source tree (a checkout, or an editable install), else from the installed
    distribution's metadata (setuptools puts it in the ``.dist-info`` folder)."""
    checkout = Path(svseg.__file__).resolve().parent.parent
    if (checkout / "setup.cfg").is_file() and (checkout / "LICENSE").is_file():
        return (checkout / "LICENSE").read_text()
    with contextlib.suppress(importlib_metadata.PackageNotFoundError):
        for f in importlib_metadata.distribution("svseg").files or []:
            if f.name == "LICENSE":
                return f.read_text()
    raise FileNotFoundError("svseg's LICENSE file is neither in the source tree nor in the installed distribution.")


DEMO_LICENCE = """\
Training data: the svseg demo data set, built by svseg from the MNI152 ICBM 2009a nonlinear symmetric
T1 template and its grey- and white-matter probability maps, as shipped inside nilearn
(nilearn.datasets.load_mni152_template / load_mni152_gm_template / load_mni152_wm_template).

Template: ICBM 2009a Nonlinear Symmetric, McConnell Brain Imaging Centre, Montreal Neurological
Institute (V. Fonov, A. Evans, R. McKinstry, C. Almli, L. Collins, NeuroImage 2009 and 2011).
nilearn's own description of the template (nilearn/datasets/description/icbm152_2009.rst) gives its
licence as "unknown". The MNI distributes the ICBM 2009 templates with a copyright notice that allows
use, copying and distribution for any purpose without fee provided the notice (Copyright (C) 1993-2009
Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University) appears
in all copies, and without warranty; see http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009
and check it before you redistribute this model.
"""


def data_license(info: Mapping[str, Any], dataset: Mapping[str, Any]) -> str:
    name = str(info.get("dataset_name", ""))
    if dataset["named"] and name.lower() == "demo":
        return DEMO_LICENCE
    if dataset["named"]:
        source = f": {dataset['reference']}" if dataset["reference"] else ""
        return (f"Training data: the {dataset['title']} data set ({name}){source}.\n"
                "Its licence is set by its publishers (the challenge or release it comes from); svseg does not record "
                "it. Check their terms before you redistribute this model.\n")
    text = f"Training data: a user's data set, {dataset['title']} (svseg data set folder {name}).\n"
    if dataset["licence"]:
        return text + f"Its dataset.json states the licence: {dataset['licence']}\n"
    return text + "Licence: unknown, set by the user (its dataset.json states none).\n"


def readme(meta: Mapping[str, Any], info: Mapping[str, Any], dataset: Mapping[str, Any], entry: Mapping[str, Any],
            progress: list, summary: Mapping[str, Any] | None, figures: list[str], folder: str) -> str:
    names = list(meta["network_data_format"]["outputs"]["pred"]["channel_def"].values())
    channels = list(meta["network_data_format"]["inputs"]["image"]["channel_def"].values())
    last = progress[-1] if progress and isinstance(progress[-1], dict) else {}
    metrics = meta.get("eval_metrics", {})
    lines = [
        f"# {meta['name']}", "",
        f"Exported by `svseg export` (svseg {entry['svseg_version']}, {entry['exported']}) from the training run "
        f"`{entry['run']}` (weights `{entry['weights']}`): the `{entry['bundle']}` bundle's `{entry['network']}`.",
        "Research only, not for clinical use.", "",
        "## Training data", "",
        f"- data set: {dataset['title']} (`{info.get('dataset_name')}`)"
        + (f", fold {info.get('fold')}" if info.get("fold") is not None else ""),
        f"- classes ({len(names)}, label id = index): " + ", ".join(f"{i} {n}" for i, n in enumerate(names)),
        f"- input: {len(channels)} channel(s) {channels}, modality {dataset['modality'] or 'unknown'}",
    ]
    if dataset.get("cases"):
        lines.append(f"- training cases in the plan: {dataset['cases']}")
    lines += [f"- preprocessing: {preprocessing_text(info)}", "- licence of the data: see `data_license.txt`", "",
              "## Training and figures", ""]
    if last:
        lines.append(f"- epochs: {last.get('epoch')}, iterations: {last.get('iteration')}, "
                     f"last training loss: {number_text(last.get('train_loss'))}")
    else:
        lines.append("- the run folder has no progress.json: epochs and losses are not known")
    if "val_mean_dice_best" in metrics:
        lines.append(f"- best validation mean Dice (foreground classes): {metrics['val_mean_dice_best']:.4f} at epoch "
                     f"{metrics['val_mean_dice_best_epoch']}")
    else:
        lines.append("- no validation metric was recorded")
    if summary and isinstance(summary.get("classes"), dict):
        lines.append(f"- evaluation in the run folder ({summary.get('protocol', 'standard')} protocol):")
        for cls, row in summary["classes"].items():
            lines.append(f"  - {cls}: Dice {number_text(row.get('dice'))}, HD95 {number_text(row.get('hd95'))}")
    lines += [f"![{f}]({f})" for f in figures]
    lines += ["", "## Use", "", "With svseg installed (`pip install svseg`), unpack the zip and run:", "", "```bash",
              f"python -m monai.bundle run --config_file {folder}/configs/inference.json --bundle_root {folder} \\",
              "    --input_dir /path/to/images --prediction_dir /path/to/predictions",
              "```", "",
              "or, without unpacking: `svseg predict --model MODEL.zip --input /path/to/images "
              "--output /path/to/predictions`.",
              "`--input_dir` is required (without it the bundle looks for its training data set). Each image gets "
              "`<case>_seg.nii.gz` (`_seg.png` for 2D images) with its own geometry. Add `--device cpu` to stay off "
              "the GPU.",
              "", "Files: `configs/inference.json` (the recipe, values of the trained model baked in), "
              "`configs/metadata.json`, `models/model.pt` (state dict), `models/svseg_model.json` (what the model was "
              "trained with), `LICENSE` (svseg's licence, Apache-2.0), `docs/data_license.txt`.", ""]
    return "\n".join(lines)


def number_text(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)
