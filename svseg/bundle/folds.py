"""Cross-validation: train the folds of a planned data set, and several bundles, in turn.

nnU-Net trains ``nnUNetv2_train DATASET CONFIG FOLD`` once per fold and, with ``--npz``, keeps the
softmax of each fold's validation cases, which ``nnUNetv2_find_best_configuration`` reads. svseg
does the same with its bundles (``svseg train --fold all`` / ``--bundle all``, :func:`train_runs`):

* every (bundle, fold) is one ordinary training run (:func:`svseg.bundle.train`, so a killed fold
  resumes from its ``checkpoint_latest.pt``), in ``<output>/fold_<k>`` for ``--fold all`` and
  ``<output>/<bundle>[/fold_<k>]`` for several bundles; ``--fold k`` writes where it always wrote;
* after each run on a planned data set folder, the fold's validation cases are predicted with the
  run's ``models/model.pt`` through :func:`svseg.bundle.predict` (the one prediction path) into
  ``<run>/validation/``: ``<case>_seg.nii.gz`` (or ``.png``) and ``<case>.npz``, the softmax; then
  ``validation/predictions.json`` records the fold, the cases, the classes and the training request
  (config files and overrides). That file, written last, marks the fold as finished: ``--fold all``
  skips such folds when asked the same again, and resumes the others (also a finished fold asked for
  more, e.g. a larger ``max_epochs``);
* the training's overrides that shape the network or its input (``network_def#features=16``,
  ``encoder_name=resnet18``, ...) are recorded in the model's ``svseg_model.json``
  (``bundle_overrides``), so ``svseg predict`` rebuilds the same network without repeating them.

The named data sets (``synapse``, ``demo``, ...) have fixed splits and no folds: their runs train as
before and keep no cross-validation predictions.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from svseg.bundle.config import inputs_prepared
from svseg.bundle.model_info import MODEL_INFO_NAME
from svseg.bundle.run import bundle_dir, bundle_names, predict, train
from svseg.data import file_suffix, is_dataset_folder, load_plan, plan_datalist
from svseg.io import atomic_save_json

__all__ = ["ALL", "VALIDATION_DIR", "CV_MARKER", "train_runs", "run_folders", "fold_finished", "training_request",
           "predict_validation",
           "inference_overrides", "record_bundle_overrides", "fold_of", "FOLD_PATTERN"]

logger = logging.getLogger(__name__)

ALL = "all"
#: a fold run's folder of validation predictions, and the file that marks it complete
VALIDATION_DIR = "validation"
CV_MARKER = "predictions.json"
FOLD_PATTERN = re.compile(r"^fold_(\d+)$")
# inference.json keys that say where and how to run, not what the network is: never carried over
_RUNTIME_KEYS = {"bundle_root", "output_dir", "ckpt_dir", "ckpt_path", "prediction_dir", "input_dir", "dataset_name",
                 "data_root", "dataset_dir", "device", "torch_device", "save_probabilities", "probability_dtype",
                 "keep_largest", "tta", "inputs_prepared", "imports", "initialize", "run", "handlers", "evaluator",
                 "dataloader", "dataset", "fast_mode", "compile"}


def fold_of(run: str | os.PathLike) -> int | None:
    """The fold ``k`` of a run folder named ``fold_<k>``, else ``None``."""
    m = FOLD_PATTERN.match(Path(run).name)
    return int(m.group(1)) if m else None


def _bundles(names: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for name in names:
        for b in (bundle_names() if str(name).lower() == ALL else [str(name)]):
            if b not in chosen:
                chosen.append(b)
    for b in chosen:
        bundle_dir(b)  # an unknown name fails here, before anything trains
    return chosen


def _dataset(bundle: str, override: dict[str, Any], config_files: Sequence[str] = ("train.json",)) -> str:
    """The ``dataset_name`` a run trains on: the override, else the last config file that sets it."""
    if override.get("dataset_name") is not None:
        return str(override["dataset_name"])
    name = None
    for f in config_files:
        doc = json.loads((bundle_dir(bundle) / "configs" / f).read_text())
        name = doc.get("dataset_name", name)
    return str(name)


def _folds(dataset: str, fold: int | str | None) -> list[int | None]:
    if fold is None:
        return [None]
    if str(fold).lower() != ALL:
        try:
            return [int(fold)]
        except ValueError as e:
            raise ValueError(f"--fold must be a fold number or 'all', got {fold!r}.") from e
    if not is_dataset_folder(dataset):
        raise ValueError(f"--fold all needs a data set folder planned by `svseg plan` (it has folds); the named data "
                         f"set {dataset!r} has fixed splits")
    return list(range(len(load_plan(dataset)["folds"])))


def run_folders(bundles: Sequence[str], fold: int | str | None = None, output_dir: str | os.PathLike | None = None,
                dataset: str | None = None, config_files: Sequence[str] = ("train.json",)
                ) -> list[tuple[str, int | None, Path]]:
    """``(bundle, fold, run folder)`` of every run :func:`train_runs` makes, in order.

    One bundle and one fold (or none): ``output_dir`` (default the bundle's ``runs/``); ``fold="all"``:
    ``<output_dir>/fold_<k>``; several bundles: ``<output_dir>/<bundle>`` (then ``/fold_<k>``).
    """
    names = _bundles(bundles)
    out = []
    for b in names:
        base = Path(output_dir).absolute() if output_dir is not None else bundle_dir(b) / "runs"
        if len(names) > 1 and output_dir is not None:
            base = base / b
        for k in _folds(dataset or _dataset(b, {}, config_files), fold):
            out.append((b, k, base / f"fold_{k}" if str(fold).lower() == ALL else base))
    return out


def inference_overrides(bundle: str, override: dict[str, Any]) -> dict[str, Any]:
    """The training overrides that also shape the bundle's ``inference.json`` network or input: those whose
    first id (``network_def`` of ``network_def#features``) is an ``inference.json`` key, less the keys
    that say where and how to run (paths, device, data set)."""
    keys = set(json.loads((bundle_dir(bundle) / "configs" / "inference.json").read_text()))
    return {k: v for k, v in override.items() if k.split("#")[0] in keys and k.split("#")[0] not in _RUNTIME_KEYS}


def record_bundle_overrides(run: Path, bundle: str, override: dict[str, Any]) -> dict[str, Any]:
    """Write :func:`inference_overrides` into ``<run>/models/svseg_model.json`` as ``bundle_overrides``
    (atomically; ``{}`` clears an earlier run's), so a prediction rebuilds the trained network."""
    path = run / "models" / MODEL_INFO_NAME
    kept = inference_overrides(bundle, override)
    if path.is_file():
        info = json.loads(path.read_text())
        if info.get("bundle_overrides", {}) != kept:
            atomic_save_json({**info, "bundle_overrides": kept}, path)
    return kept


def _folder(dataset: str | os.PathLike) -> Path:
    """A data set folder's absolute path (given as the folder or as its ``dataset.json``)."""
    path = Path(dataset).expanduser().absolute()
    return path.parent if path.is_file() else path


def _marker(run: Path) -> Path:
    return run / VALIDATION_DIR / CV_MARKER


def training_request(config_files: Sequence[str], override: dict[str, Any]) -> dict[str, Any]:
    """What a run was asked to train (config files and overrides, less ``output_dir``, ``resume`` and ``device``),
    as JSON reads it back: a fold finished under another request (e.g. more ``max_epochs``) is not finished."""
    skip = {"output_dir", "resume", "device"}
    doc = {"config_files": list(config_files), "overrides": {k: override[k] for k in sorted(override) if k not in skip}}
    return json.loads(json.dumps(doc, default=str))


def fold_finished(run: str | os.PathLike, bundle: str, dataset: str, fold: int,
                  training: dict[str, Any] | None = None) -> bool:
    """Whether ``run`` holds a finished fold: ``validation/predictions.json`` names this bundle, data set and
    fold, the plan's current validation cases of the fold and (when given) the same ``training`` request
    (:func:`training_request`), and its weights exist."""
    run = Path(run)
    marker = _marker(run)
    if not marker.is_file() or not (run / "models" / "model.pt").is_file():
        return False
    try:
        doc = json.loads(marker.read_text())
    except ValueError:
        return False
    cases = sorted(i["case"] for i in plan_datalist(dataset, "validation", fold))
    same = (doc.get("bundle") == bundle and doc.get("fold") == fold and sorted(doc.get("cases", [])) == cases
            and Path(str(doc.get("dataset_name", ""))) == _folder(dataset)
            and (training is None or doc.get("training") == training))
    if not same:
        logger.warning("%s does not match fold %d of %s as planned and asked for now; that fold is trained (resumed) "
                       "and predicted again", marker, fold, dataset)
    return same


def _stage(items: list[dict], folder: Path) -> None:
    """Link each case's image files into ``folder`` as ``<case>_<channel:04d><ending>``: nnU-Net's channel
    names, which :func:`svseg.bundle.input_cases` groups back into exactly these cases."""
    for item in items:
        files = item["image"] if isinstance(item["image"], list) else [item["image"]]
        for c, f in enumerate(files):
            link = folder / f"{item['case']}_{c:04d}{file_suffix(f)}"
            try:
                link.symlink_to(Path(f).absolute())
            except OSError:
                link.write_bytes(Path(f).read_bytes())


def predict_validation(bundle: str, run: str | os.PathLike, dataset: str, fold: int, device: str = "auto",
                       overrides: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> Path:
    """Predict the validation cases of ``fold`` with ``<run>/models/model.pt`` into ``<run>/validation/``
    (label maps and ``<case>.npz`` softmax, :func:`svseg.bundle.predict`), then write
    ``validation/predictions.json``; return that file.

    The intensity rule is applied as the training applied it (a planned folder's files are raw).
    """
    run = Path(run).absolute()
    items = plan_datalist(dataset, "validation", fold)
    if not items:
        raise ValueError(f"fold {fold} of {dataset} has no validation cases.")
    out = run / VALIDATION_DIR
    ckpt = run / "models" / "model.pt"
    extra = {**(overrides or {}), "inputs_prepared": inputs_prepared(None, None, dataset)}
    with tempfile.TemporaryDirectory(prefix="svseg-validation-") as staging:
        _stage(items, Path(staging))
        written = predict(bundle, staging, out, checkpoint=ckpt, device=device, overrides=extra,
                          save_probabilities=True)
    info = json.loads((ckpt.parent / MODEL_INFO_NAME).read_text()) if (ckpt.parent / MODEL_INFO_NAME).is_file() else {}
    doc = {"bundle": bundle, "network": info.get("network"), "dataset_name": str(_folder(dataset)),
           "fold": int(fold), "checkpoint": os.path.relpath(ckpt, run), "class_names": info.get("class_names"),
           "cases": sorted(i["case"] for i in items),
           "label_maps": sorted(p.name for p in written), "probabilities": sorted(f"{i['case']}.npz" for i in items),
           "bundle_overrides": info.get("bundle_overrides", {}), "training": training}
    logger.info("fold %d of %s: %d validation case(s) predicted into %s", fold, bundle, len(items), out)
    return atomic_save_json(doc, _marker(run))


def train_runs(bundles: Sequence[str], fold: int | str | None = None, config_files: Sequence[str] = ("train.json",),
               **override: Any) -> list[Path]:
    """Train every bundle of ``bundles`` (``"all"``: the five) on every fold of ``fold`` in turn; return the run folders.

    Args:
        bundles: bundle names, or ``["all"]``.
        fold: ``None`` (the bundle's ``fold``, 0), a fold number, or ``"all"`` (every fold of the data
            set's plan; it must be a planned data set folder).
        config_files: config files of each bundle, merged in order (each bundle must have them).
        override: config overrides of every run (``dataset_name``, ``output_dir``, ``max_epochs``, ...);
            ``output_dir`` is the base folder of :func:`run_folders`.

    A fold of a planned data set is finished once its validation predictions are written
    (:func:`predict_validation`) for the same :func:`training_request`; with ``resume`` other than
    ``False`` a finished fold is skipped and any other resumes from its last checkpoint.

    Raises:
        FileNotFoundError: an unknown bundle, or a bundle without one of ``config_files``.
        ValueError: ``fold="all"`` on a named data set.
    """
    names = _bundles(bundles)
    for b in names:
        for f in config_files:
            if not (bundle_dir(b) / "configs" / f).is_file():
                raise FileNotFoundError(f"bundle {b!r} has no configs/{f} (asked for by --config).")
    override = dict(override)
    output = override.pop("output_dir", None)
    plan = run_folders(names, fold, output, override.get("dataset_name"), config_files)
    runs = []
    for b, k, run in plan:
        dataset = _dataset(b, override, config_files)
        planned = is_dataset_folder(dataset) and str(override.get("fold", "")).lower() != ALL
        k_eff = k if k is not None else int(override.get("fold", 0)) if planned else None
        runs.append(run)
        request = training_request(config_files, {**override, **({} if k is None else {"fold": k})})
        if planned and override.get("resume", "auto") is not False and fold_finished(run, b, dataset, k_eff, request):
            logger.info("%s fold %d: finished (%s), skipped", b, k_eff, _marker(run))
            continue
        train(b, config_files, **{**override, "output_dir": str(run), **({} if k is None else {"fold": k})})
        kept = record_bundle_overrides(run, b, override)
        if planned:
            predict_validation(b, run, dataset, k_eff, device=str(override.get("device", "auto")), overrides=kept,
                               training=request)
    return runs
