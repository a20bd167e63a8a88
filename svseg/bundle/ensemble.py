"""Ensembles of folds and bundles: their softmax probabilities averaged before the argmax.

nnU-Net predicts with every fold of a configuration and averages (``nnUNetv2_predict -f 0 1 2 3 4``),
and ensembles configurations from saved probabilities (``--save_probabilities``, then
``nnUNetv2_ensemble``). svseg does both over its bundles:

* :func:`predict_models` (``svseg predict``): one model is predicted as before
  (:func:`svseg.bundle.predict`); several (``--checkpoint`` files or run folders, one ``--bundle``
  for all or one per ``--checkpoint``) are each predicted with their probabilities into a temporary
  folder, then :func:`ensemble_folders` averages them into the output. A run folder stands for its
  ``models/model.pt``, or for every ``fold_<k>/models/model.pt`` in it (:func:`run_checkpoints`: all
  the plan's folds must be there).
* :func:`ensemble_folders` (``svseg ensemble``): average the ``<case>.npz`` of several prediction
  folders, argmax, optionally keep each chosen class's largest connected component
  (:func:`svseg.inference.keep_largest_component`, as the bundles' ``inference.json`` and ``svseg
  find-best``), and
  write ``<case>_seg.nii.gz`` / ``.png`` with the first folder's label map as geometry reference,
  ``<case>_statistics.json``, and with ``save_probabilities`` the averaged ``<case>.npz``.

Every model is checked before anything is written: an ensemble whose models predict other class
counts or class names, or whose run folder misses a fold, is refused with one line.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from svseg.bundle.config import input_cases, input_files, inputs_prepared
from svseg.bundle.folds import fold_of
from svseg.bundle.model_info import read_model_info
from svseg.bundle.run import bundle_dir, predict
from svseg.bundle.staging import pending_inputs, prediction_class_names, stage_inputs
from svseg.data import is_dataset_folder, load_plan
from svseg.errors import InputError
from svseg.inference import keep_largest_component, write_nifti
from svseg.inference.statistics import write_statistics
from svseg.inference.writer import probability_header, read_probabilities, write_label_png, write_probabilities
from svseg.runtime import progress_enabled

__all__ = ["run_checkpoints", "resolve_models", "keep_largest_ids", "ensemble_folders",
           "predict_models"]

logger = logging.getLogger(__name__)

_LABEL_ENDINGS = ("_seg.nii.gz", "_seg.nii", "_seg.png")


def run_checkpoints(path: str | os.PathLike) -> list[Path]:
    """The weights a ``--checkpoint`` stands for: a file itself; a run folder's ``models/model.pt``; or, for a
    folder of ``fold_<k>`` runs, each fold's ``models/model.pt``, fold by fold.

    Raises:
        FileNotFoundError: the path does not exist.
        svseg.errors.InputError: a folder with neither, or a fold missing: a ``fold_<k>`` without weights, or a fold
            of the model's planned data set without a ``fold_<k>`` folder.
    """
    p = Path(path).absolute()
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"--checkpoint {str(path)!r} does not exist.")
    if (p / "models" / "model.pt").is_file():
        return [p / "models" / "model.pt"]
    folds = {fold_of(d): d for d in p.iterdir() if d.is_dir() and fold_of(d) is not None}
    if not folds:
        raise InputError(p, "holds neither models/model.pt nor fold_<k> run folders (give a weights file, a run "
                            "folder, or a folder of fold runs; one per --bundle)")
    info = next((read_model_info(d / "models" / "model.pt") for d in folds.values()
                 if (d / "models" / "model.pt").is_file()), None) or {}
    dataset = str(info.get("dataset_name", ""))
    expected = (range(len(load_plan(dataset)["folds"])) if dataset and is_dataset_folder(dataset) and Path(dataset).exists()
                else range(max(folds) + 1))
    missing = [k for k in expected if k not in folds or not (folds[k] / "models" / "model.pt").is_file()]
    if missing:
        raise InputError(p, f"fold(s) {', '.join(map(str, missing))} missing (no fold_<k>/models/model.pt; the data set "
                            f"has {len(expected)} folds): train them (svseg train --fold all), or pass the fold "
                            "weights you want one by one")
    return [folds[k] / "models" / "model.pt" for k in sorted(folds)]


def resolve_models(bundles: str | Sequence[str], checkpoints: str | os.PathLike | Sequence[str | os.PathLike] | None = None
                   ) -> list[tuple[str, Path | None]]:
    """``(bundle, weights)`` of every model of a prediction.

    ``bundles`` and ``checkpoints`` may be one value or a list. No ``checkpoints``: each bundle with its default weights (``None``). One bundle: every checkpoint (and every fold of a
    run folder, :func:`run_checkpoints`) with it. As many bundles as checkpoints: pairwise.

    Raises:
        ValueError: other counts.
    """
    bundles = [str(bundles)] if isinstance(bundles, (str, os.PathLike)) else [str(b) for b in bundles]
    if isinstance(checkpoints, (str, os.PathLike)):
        checkpoints = [checkpoints]
    if not bundles:
        raise ValueError("give at least one --bundle.")
    if not checkpoints:
        return [(b, None) for b in bundles]
    if len(bundles) == 1:
        pairs = [(bundles[0], c) for c in checkpoints]
    elif len(bundles) == len(checkpoints):
        pairs = list(zip(bundles, checkpoints))
    else:
        raise ValueError(f"give one --bundle for all --checkpoint entries or one --bundle per entry (got {len(bundles)} "
                         f"bundles and {len(checkpoints)} checkpoint entries).")
    return [(b, f) for b, c in pairs for f in run_checkpoints(c)]


def keep_largest_ids(values: Sequence[int | str] | None, class_names: Sequence[str]) -> list[int]:
    """Class ids (1..K-1) of ``values``, each a class id or a class name.

    Raises:
        ValueError: a value that is neither a foreground id nor a foreground class name.
    """
    names = [str(n) for n in class_names]
    out: list[int] = []
    for v in values or ():
        text = str(v).strip()
        if text.isdigit() and 0 < int(text) < len(names):
            c = int(text)
        elif text in names[1:]:
            c = names.index(text)
        else:
            raise ValueError(f"--keep-largest {text!r} is not a foreground class of the model (ids 1..{len(names) - 1}: "
                             f"{', '.join(names[1:])}).")
        if c not in out:
            out.append(c)
    return sorted(out)


def _label_map(folder: Path, case: str) -> Path:
    for ending in _LABEL_ENDINGS:
        if (folder / f"{case}{ending}").is_file():
            return folder / f"{case}{ending}"
    raise InputError(folder / f"{case}.npz", f"has no label map {case}_seg.nii.gz or {case}_seg.png beside it to take "
                                              "the geometry from")


def _header(path: Path) -> tuple[list[str] | None, int]:
    """Class names (``None`` for an nnU-Net file) and class count of a probability file, read cheaply."""
    shape, names = probability_header(path)
    return names, int(shape[0])


def ensemble_folders(folders: Sequence[str | os.PathLike], output_dir: str | os.PathLike,
                     keep_largest_classes: Sequence[int | str] = (), save_probabilities: bool = False,
                     probability_dtype: str = "float16", cases: Sequence[str] | None = None) -> list[Path]:
    """Average the ``<case>.npz`` probabilities of ``folders`` case by case and write the label maps.

    Args:
        folders: prediction folders, each with ``<case>.npz`` for every case; the first also with the label
            maps ``<case>_seg.nii.gz`` / ``.png`` (the geometry of the written maps).
        output_dir: where ``<case>_seg.*``, ``<case>_statistics.json`` (and ``<case>.npz``) go.
        keep_largest_classes: class ids or names whose largest connected component alone is kept.
        save_probabilities: also write the averaged probabilities (``probability_dtype``).
        cases: the cases (default every ``<case>.npz`` of the first folder).

    Returns:
        The written label maps.

    Raises:
        svseg.errors.InputError: a missing ``.npz``, or folders whose classes differ (count or names);
            checked for every file before anything is written.
    """
    folders = [Path(f).absolute() for f in folders]
    if not folders:
        raise ValueError("give at least one folder of probabilities.")
    for f in folders:
        if not f.is_dir():
            raise FileNotFoundError(f"probability folder {str(f)!r} does not exist.")
    if cases is None:
        cases = sorted(p.name[:-4] for p in folders[0].glob("*.npz"))
        if not cases:
            raise FileNotFoundError(f"{folders[0]} holds no <case>.npz probability files (svseg predict "
                                    "--save-probabilities writes them).")
    cases = list(cases)
    names, count = _header(folders[0] / f"{cases[0]}.npz")
    for case in cases:
        for f in folders:
            path = f / f"{case}.npz"
            if not path.is_file():
                raise InputError(path, "missing: every ensembled folder needs the probabilities of every case")
            if f is folders[0] and case == cases[0]:
                continue
            other, n = _header(path)
            if n != count or (names is not None and other is not None and other != names):
                raise InputError(path, f"holds {n} classes {other or ''} but {folders[0] / (cases[0] + '.npz')} holds "
                                       f"{count} {names or ''}: ensembled models must predict the same classes")
        _label_map(folders[0], case)
    class_names = names or [f"class_{i}" for i in range(count)]
    ids = keep_largest_ids(keep_largest_classes, class_names)
    out = Path(output_dir).absolute()
    created = not out.exists()
    written: list[Path] = []
    try:
        for case in tqdm(cases, desc="ensemble", unit="case", disable=not progress_enabled()):
            total = None
            for f in folders:
                probs, _ = read_probabilities(f / f"{case}.npz")
                if total is not None and probs.shape != total.shape:
                    raise InputError(f / f"{case}.npz", f"has shape {probs.shape}, {folders[0] / (case + '.npz')} "
                                                        f"{total.shape}")
                total = probs if total is None else total + probs
            mean = total / len(folders)
            labels = np.argmax(mean, axis=0).astype(np.uint8 if count < 256 else np.int32)
            if ids:
                labels = keep_largest_component(labels, classes=ids)
            if save_probabilities:
                write_probabilities(mean, out / f"{case}.npz", names, dtype=probability_dtype)
            reference = _label_map(folders[0], case)
            target = out / reference.name
            if reference.name.endswith(".png"):
                write_label_png(labels, target)
            else:
                write_nifti(labels, reference, target)
            write_statistics(target, class_names=class_names)
            written.append(target)
            logger.info("ensembled %s (%d models) -> %s", case, len(folders), target)
    except BaseException:
        if created and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise
    return written


def _check_members(models: list[tuple[str, Path | None]], dataset: str | None) -> list[str]:
    """The class names the models share; refuse (before anything is written) a model with other classes or channels."""
    first_names: list[str] | None = None
    first_channels = None
    first = None
    for b, ckpt in models:
        weights = ckpt if ckpt is not None else bundle_dir(b) / "runs" / "models" / "model.pt"
        names = prediction_class_names(weights, dataset, bundle_dir(b))
        channels = (read_model_info(weights) or {}).get("in_channels")
        if first_names is None:
            first_names, first_channels, first = names, channels, weights
            continue
        if names != first_names:
            raise InputError(weights, f"predicts {len(names)} classes {names}, but {first} predicts {len(first_names)} "
                                      f"{first_names}: an ensemble averages models of the same classes")
        if channels is not None and first_channels is not None and channels != first_channels:
            raise InputError(weights, f"takes {channels} input channel(s), {first} takes {first_channels}")
    return list(first_names or [])


def predict_models(bundles: Sequence[str], input_path: str | os.PathLike, output_dir: str | os.PathLike,
                   checkpoints: Sequence[str | os.PathLike] | None = None, device: str = "auto",
                   dataset: str | None = None, overrides: dict[str, Any] | None = None, skip_existing: bool = False,
                   save_probabilities: bool = False, probability_dtype: str = "float16", tta: bool = False,
                   keep_largest_classes: Sequence[int | str] = ()) -> list[Path]:
    """``svseg predict``: one model (:func:`svseg.bundle.predict`) or an ensemble of several, averaged.

    Args:
        bundles: bundle names: one for every checkpoint, or one per ``checkpoints`` entry.
        input_path, output_dir, device, dataset, overrides, skip_existing: as :func:`svseg.bundle.predict`
            (``overrides`` go to every model).
        checkpoints: weights files or run folders (:func:`run_checkpoints`); default each bundle's weights.
        save_probabilities: write ``<case>.npz`` (for an ensemble, the averaged probabilities).
        probability_dtype: ``float16`` or ``float32`` on disk.
        tta: flip test-time augmentation for every model.
        keep_largest_classes: class ids or names whose largest connected component alone is kept (after the
            average, for an ensemble).

    Returns:
        The written label maps.
    """
    models = resolve_models(bundles, checkpoints)
    names = _check_members(models, dataset)
    ids = keep_largest_ids(keep_largest_classes, names)
    if len(models) == 1:
        b, ckpt = models[0]
        return predict(b, input_path, output_dir, checkpoint=ckpt, device=device, dataset=dataset, overrides=overrides,
                       skip_existing=skip_existing, save_probabilities=save_probabilities,
                       probability_dtype=probability_dtype, tta=tta, keep_largest=ids)
    files = input_files(input_path)
    source = Path(input_path).absolute()
    out = Path(output_dir).absolute()
    if skip_existing:
        files, done = pending_inputs(files, out, probabilities=save_probabilities)
        logger.info(f"--continue: skipped {len(done)} case(s) whose outputs are already in {out}")
        if not files:
            return []
    prepared = inputs_prepared(source.parent if source.is_file() else source)
    member_overrides = {"inputs_prepared": prepared, **(overrides or {})}
    scratch = out.parent if out.parent.is_dir() else None  # the same disk as the output, when it exists
    with tempfile.TemporaryDirectory(prefix=".svseg-ensemble-", dir=scratch) as tmp:
        staged = stage_inputs(source, files, Path(tmp) / "inputs")
        folders = []
        for i, (b, ckpt) in enumerate(models):
            logger.info("ensemble member %d/%d: %s %s", i + 1, len(models), b, ckpt or "(bundle default weights)")
            folder = Path(tmp) / f"member_{i}"
            predict(b, staged, folder, checkpoint=ckpt, device=device, dataset=dataset, overrides=member_overrides,
                    save_probabilities=True, probability_dtype="float32", tta=tta)
            folders.append(folder)
        return ensemble_folders(folders, out, keep_largest_classes=ids, save_probabilities=save_probabilities,
                                probability_dtype=probability_dtype, cases=[c for c, _ in input_cases(files)])
