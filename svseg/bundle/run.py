"""Run svseg's bundles from Python: find them, run a config, predict files.

* :func:`bundle_dir` finds ``bundles/<name>``: next to the source tree (a clone, or an editable
  install), else inside the installed package (``svseg/bundles/``, shipped by ``pip install .``),
  or under ``$SVSEG_BUNDLES_DIR`` first when that is set.
* :func:`run_bundle` runs one run id of a bundle in this process, exactly as
  ``python -m monai.bundle run`` would (MONAI's ``ConfigWorkflow``).
* :func:`predict` segments image files with a bundle's ``inference.json``; ``svseg predict`` calls it.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.bundle import ConfigWorkflow

import svseg
from svseg.bundle.config import input_cases, input_files, inputs_prepared
from svseg.bundle.model_info import read_model_info
from svseg.bundle.staging import case_outputs, pending_inputs, prediction_class_names, stage_inputs
from svseg.data import is_dataset_folder
from svseg.errors import InputError
from svseg.inference.statistics import write_statistics

__all__ = ["bundle_dir", "bundle_names", "bundles_root", "run_bundle", "train", "predict"]

logger = logging.getLogger(__name__)

_NIFTI = (".nii.gz", ".nii")


def _bundle_roots() -> list[Path]:
    package = Path(svseg.__file__).resolve().parent
    roots = [package.parent / "bundles", package / "bundles"]
    env = os.environ.get("SVSEG_BUNDLES_DIR")
    return ([Path(env)] if env else []) + roots


def bundles_root() -> Path:
    """The folder that holds the bundles (the first of :func:`bundle_dir`'s places that exists)."""
    for root in _bundle_roots():
        if root.is_dir():
            return root
    raise FileNotFoundError(f"no bundles folder found (looked in {', '.join(str(r) for r in _bundle_roots())}).")


def bundle_names() -> list[str]:
    """Names of the bundles found by :func:`bundle_dir`, sorted."""
    names: set[str] = set()
    for root in _bundle_roots():
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if (p / "configs" / "train.json").is_file())
    return sorted(names)


def bundle_dir(name: str | os.PathLike = "msa2net") -> Path:
    """The folder of bundle ``name`` (holding ``configs/train.json``); or ``name`` itself when it is a path
    (absolute, or with a folder part) to a bundle folder holding ``configs/inference.json``, such as an
    unpacked ``svseg export`` zip.

    Raises:
        FileNotFoundError: no such bundle; the message lists the bundles there are.
    """
    path = Path(name)
    if path.is_absolute() or len(path.parts) > 1:
        if (path / "configs" / "inference.json").is_file():
            return path.absolute()
        raise FileNotFoundError(f"bundle folder {str(name)!r} has no configs/inference.json.")
    for root in _bundle_roots():
        candidate = root / str(name)
        if (candidate / "configs" / "train.json").is_file():
            return candidate
    raise FileNotFoundError(f"bundle {name!r} not found; available bundles: {', '.join(bundle_names()) or 'none'} "
                            f"(looked in {', '.join(str(r) for r in _bundle_roots())}).")


def run_bundle(run_id: str, name: str = "msa2net", config_files: Sequence[str] = ("train.json",),
               **override: Any) -> Any:
    """Run ``run_id`` of bundle ``name`` in this process, as ``python -m monai.bundle run`` would.

    Args:
        run_id: ``training``, ``evaluating`` or ``run``.
        name: bundle name (see :func:`bundle_dir`).
        config_files: config file names under the bundle's ``configs/``, merged in order.
        override: config overrides, e.g. ``max_epochs=2``, ``data_root="/data/synapse"``.
    """
    root = bundle_dir(name)
    configs = [str(root / "configs" / f) for f in config_files]
    for c in configs:
        if not Path(c).is_file():
            raise FileNotFoundError(f"bundle {name!r} has no {Path(c).relative_to(root)}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MONAI's "configs run code" notice: these are ours
        workflow = ConfigWorkflow(
            config_file=configs,
            meta_file=str(root / "configs" / "metadata.json"),
            logging_file=str(root / "configs" / "logging.conf"),
            run_id=run_id,
            workflow_type=None,
            bundle_root=str(root),
            **override,
        )
    workflow.initialize()
    result = workflow.run()
    workflow.finalize()
    return result


def train(bundle: str, config_files: Sequence[str] = ("train.json",), **override: Any) -> Path:
    """Run a bundle's ``training``; return its output folder.

    A killed run resumes from ``<output_dir>/checkpoint_latest.pt`` (``resume="auto"``). When the run
    fails before it saved a first checkpoint in an output folder it created, the folder is removed,
    so a bad data set or a typo leaves no half-made run behind (event files, an empty ``models/``).
    """
    root = bundle_dir(bundle)
    out = Path(override.get("output_dir") or root / "runs").absolute()
    created = not out.exists()
    try:
        run_bundle("training", bundle, tuple(config_files), **override)
    except BaseException:
        if created and out.is_dir() and not any(out.glob("checkpoint_*.pt")):
            shutil.rmtree(out, ignore_errors=True)
        raise
    return out


def _network_class(bundle: str, overrides: dict[str, Any] | None = None) -> str:
    """The class name of the bundle's ``network_def`` (``svseg.networks.MSA2Net`` -> ``MSA2Net``), overrides included."""
    network_def = (overrides or {}).get("network_def")
    if not isinstance(network_def, dict):
        network_def = json.loads((bundle_dir(bundle) / "configs" / "inference.json").read_text())["network_def"]
    return str(network_def["_target_"]).rsplit(".", 1)[-1]


def _model_overrides(bundle: str, checkpoint: Path, dataset: str | None,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the weights' ``svseg_model.json`` says the bundle must be set to; refuse a mismatch."""
    info = read_model_info(checkpoint)
    if info is None:
        return {} if dataset is None else {"dataset_name": dataset}
    expected = _network_class(bundle, overrides)
    if info.get("network") and info["network"] != expected:
        raise InputError(checkpoint, f"holds {info['network']} weights, not {expected} (bundle {bundle!r})")
    trained_on = str(info.get("dataset_name", ""))
    if dataset is not None and trained_on and _dataset_key(dataset) != _dataset_key(trained_on):
        raise InputError(checkpoint, f"was trained on the {trained_on!r} data set, not {dataset!r}")
    # everything the preprocessing and the network shape depend on comes from the model, not from the
    # data set as it is today (a planned folder may since have changed, moved or gone)
    keys = ("dataset_name", "intensity_mean", "intensity_std", "roi_size", "num_classes", "class_names", "in_channels", "slice_axis",
            "spatial_dims", "intensity_rule", "inference_mode")
    out = {k: info[k] for k in keys if k in info}
    out.update(info.get("bundle_overrides") or {})  # the training's network overrides (svseg.bundle.folds)
    if "prepared_range" in info:  # JSON keeps +-inf as "inf"/"-inf" (svseg.io policy)
        out["prepared_range"] = [float(v) for v in info["prepared_range"]]
    return out


def _dataset_key(name: str) -> str:
    """A data set's identity: a known name in lower case, a folder (or its dataset.json) as its resolved folder."""
    if is_dataset_folder(name):
        path = Path(name).expanduser().absolute()
        return str(path.parent if path.name.endswith(".json") else path)
    return str(name).lower()


def _load_error(exc: BaseException) -> BaseException | None:
    """The state-dict loading error inside a bundle run's exception chain, if that is what failed."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, RuntimeError) and "Error(s) in loading state_dict" in str(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def predict(bundle: str, input_path: str | os.PathLike, output_dir: str | os.PathLike,
            checkpoint: str | os.PathLike | None = None, device: str = "auto", dataset: str | None = None,
            overrides: dict[str, Any] | None = None, skip_existing: bool = False, save_probabilities: bool = False,
            probability_dtype: str = "float16", tta: bool = False, keep_largest: Sequence[int] = ()) -> list[Path]:
    """Segment images with a bundle and write NIfTI label maps with the input geometry.

    Runs the bundle's ``configs/inference.json`` (``run``: a MONAI ``SupervisedEvaluator`` whose
    :class:`svseg.inference.PredictionSaver` writes ``<output_dir>/<case>_seg.nii.gz``). The
    preprocessing is the one the weights were trained with: ``svseg_model.json`` beside them
    (written by every svseg training run) sets the data set, its intensity rule and the input size,
    so ``dataset`` is not needed. The intensity rule is applied unless the input folder is a data set
    svseg prepared (its recorded marker). Each input is checked before the network runs; each
    written NIfTI is checked to have the input's shape and affine. On failure nothing is left in a
    new ``output_dir`` (an existing one keeps what it held). A DICOM series folder is converted to
    NIfTI first (:mod:`svseg.bundle.staging`); beside each label map ``<case>_statistics.json`` gives
    each class's volume (area) and connected components (:func:`svseg.inference.write_statistics`).

    Args:
        bundle: bundle name (e.g. ``msa2net``).
        input_path: one image file, a DICOM series folder, or a folder of images and DICOM series folders.
        output_dir: folder for the label maps.
        checkpoint: weights (``model.pt`` or an svseg ``checkpoint_*.pt``); default the bundle's ``ckpt_path``.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        dataset: data set the weights were trained on, for weights without ``svseg_model.json``
            (default the bundle's ``dataset_name``); with one, it must agree.
        overrides: more config overrides (e.g. ``{"roi_size": [224, 224]}``).
        save_probabilities: also write ``<case>.npz``, the softmax ``(K, *spatial)`` and the class names
            (:func:`svseg.inference.write_probabilities`), in ``probability_dtype`` (``float16``/``float32``).
        tta: flip test-time augmentation (the inferer's ``tta``: logits averaged over in-plane flips).
        keep_largest: class ids whose largest connected component alone is kept (MONAI's
            ``KeepLargestConnectedComponentd`` after the argmax).
        skip_existing: skip the cases whose label map and statistics (and ``.npz`` with
            ``save_probabilities``) are already in ``output_dir`` (``svseg predict --continue``); the
            count is logged.

    Returns:
        The written label maps.

    Raises:
        FileNotFoundError: missing input, bundle or checkpoint.
        svseg.data.InputError: a bad input file or weights that do not fit the bundle.
    """
    bundle_dir(bundle)
    files = input_files(input_path)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {str(checkpoint)!r} does not exist.")
    ckpt = Path(checkpoint).absolute() if checkpoint is not None else bundle_dir(bundle) / "runs" / "models" / "model.pt"
    override: dict[str, Any] = {"device": device, **_model_overrides(bundle, ckpt, dataset, overrides),
                                "save_probabilities": bool(save_probabilities), "probability_dtype": str(probability_dtype),
                                "tta": bool(tta), "keep_largest": [int(c) for c in keep_largest]}
    if checkpoint is not None:
        override["ckpt_path"] = str(ckpt)
    elif not ckpt.is_file():
        raise FileNotFoundError(f"no --checkpoint given and the bundle has no trained weights at {ckpt}.")
    source = Path(input_path).absolute()
    override["inputs_prepared"] = inputs_prepared(source.parent if source.is_file() else source)
    override.update(overrides or {})
    out = Path(output_dir).absolute()
    created = not out.exists()
    override["prediction_dir"] = str(out)
    if skip_existing:
        files, done = pending_inputs(files, out, probabilities=save_probabilities)
        logger.info(f"--continue: skipped {len(done)} case(s) whose outputs are already in {out}; "
                    f"{len(input_cases(files))} to predict")
        if not files:
            return []
    names = prediction_class_names(ckpt, override.get("dataset_name"), bundle_dir(bundle))
    try:
        # the bundle reads a folder: the input folder itself, or a temporary one with links to the files
        # to predict and the DICOM series as NIfTI
        with tempfile.TemporaryDirectory(prefix="svseg-predict-") as staging:
            override["input_dir"] = str(stage_inputs(source, files, Path(staging)))
            try:
                run_bundle("run", bundle, ("inference.json",), **override)
            except Exception as e:
                if _load_error(e) is not None:
                    trained = override.get("dataset_name") or "the bundle's default data set"
                    raise InputError(ckpt, f"weights do not fit the {_network_class(bundle, overrides)} network of bundle "
                                           f"{bundle!r} built for {trained} (missing, unexpected or differently "
                                           "shaped parameters); pass --dataset with the data set they were trained "
                                           "on, or use weights trained by svseg (they carry svseg_model.json)") from e
                raise
        written = []
        for case, image in input_cases(files):
            f = Path(image[0] if isinstance(image, list) else image)
            target, statistics = case_outputs(out, case, image)[:2]
            if not target.is_file():
                raise FileNotFoundError(f"the bundle did not write {target} for {f}.")
            _check_geometry(f, target)
            write_statistics(target, statistics, class_names=names)
            written.append(target)
    except BaseException:
        if created and out.is_dir():
            shutil.rmtree(out, ignore_errors=True)
        raise
    return written


def _check_geometry(image: Path, pred: Path) -> None:
    if not image.name.lower().endswith(_NIFTI):
        return
    a, b = nib.load(str(image)), nib.load(str(pred))
    shape_a = a.shape[:3]
    if b.shape[:3] != shape_a or not np.allclose(a.affine, b.affine, atol=1e-4):
        logger.warning(f"{pred.name}: shape {b.shape[:3]} / affine differ from the input {image.name} {shape_a}; "
                       "the bundle's preprocessing changed the geometry.")
