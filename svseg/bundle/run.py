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
from svseg.data import is_dataset_folder
from svseg.io import IMAGE_2D_SUFFIXES
from svseg.errors import InputError

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


def bundle_dir(name: str = "msa2net") -> Path:
    """The folder of bundle ``name`` (holding ``configs/train.json``).

    Raises:
        FileNotFoundError: no such bundle; the message lists the bundles there are.
    """
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
    keys = ("dataset_name", "intensity_mean", "intensity_std", "roi_size", "num_classes", "in_channels", "slice_axis",
            "spatial_dims", "intensity_rule", "inference_mode")
    out = {k: info[k] for k in keys if k in info}
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
            overrides: dict[str, Any] | None = None) -> list[Path]:
    """Segment images with a bundle and write NIfTI label maps with the input geometry.

    Runs the bundle's ``configs/inference.json`` (``run``: a MONAI ``SupervisedEvaluator`` whose
    :class:`svseg.inference.PredictionSaver` writes ``<output_dir>/<case>_seg.nii.gz``). The
    preprocessing is the one the weights were trained with: ``svseg_model.json`` beside them
    (written by every svseg training run) sets the data set, its intensity rule and the input size,
    so ``dataset`` is not needed. The intensity rule is applied unless the input folder is a data set
    svseg prepared (its recorded marker). Each input is checked before the network runs; each
    written NIfTI is checked to have the input's shape and affine. On failure nothing is left in a
    new ``output_dir``.

    Args:
        bundle: bundle name (e.g. ``msa2net``).
        input_path: one image file or a folder of images.
        output_dir: folder for the label maps.
        checkpoint: weights (``model.pt`` or an svseg ``checkpoint_*.pt``); default the bundle's ``ckpt_path``.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        dataset: data set the weights were trained on, for weights without ``svseg_model.json``
            (default the bundle's ``dataset_name``); with one, it must agree.
        overrides: more config overrides (e.g. ``{"roi_size": [224, 224]}``).

    Returns:
        The written files.

    Raises:
        FileNotFoundError: missing input, bundle or checkpoint.
        svseg.data.InputError: a bad input file or weights that do not fit the bundle.
    """
    bundle_dir(bundle)
    files = input_files(input_path)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {str(checkpoint)!r} does not exist.")
    ckpt = Path(checkpoint).absolute() if checkpoint is not None else bundle_dir(bundle) / "runs" / "models" / "model.pt"
    override: dict[str, Any] = {"device": device, **_model_overrides(bundle, ckpt, dataset, overrides)}
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
    try:
        # the bundle reads a folder: stage a single file (a link) in a temporary one
        with tempfile.TemporaryDirectory(prefix="svseg-predict-") as staging:
            if source.is_file():
                link = Path(staging) / files[0].name
                try:
                    link.symlink_to(files[0].absolute())
                except OSError:
                    shutil.copy2(files[0], link)
                override["input_dir"] = staging
            else:
                override["input_dir"] = str(source)
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
            target = out / (f"{case}_seg.png" if f.name.lower().endswith(IMAGE_2D_SUFFIXES) else f"{case}_seg.nii.gz")
            if not target.is_file():
                raise FileNotFoundError(f"the bundle did not write {target} for {f}.")
            _check_geometry(f, target)
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
