"""Run svseg's bundles from Python: find them, run a config, predict files.

* :func:`bundle_dir` finds ``bundles/<name>``: next to the source tree (a clone, or an editable
  install), else inside the installed package (``svseg/bundles/``, shipped by ``pip install .``),
  or under ``$SVSEG_BUNDLES_DIR`` first when that is set.
* :func:`run_bundle` runs one run id of a bundle in this process, exactly as
  ``python -m monai.bundle run`` would (MONAI's ``ConfigWorkflow``).
* :func:`predict` segments image files with a bundle's ``inference.json``; ``svseg predict`` calls it.
"""
from __future__ import annotations

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
from svseg.bundle.config import IMAGE_EXTENSIONS
from svseg.io import case_name

__all__ = ["bundle_dir", "bundle_names", "bundles_root", "run_bundle", "predict", "input_files"]

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


def input_files(input_path: str | os.PathLike) -> list[Path]:
    """One image file, or the image files of a folder (sorted).

    Raises:
        FileNotFoundError: the path does not exist, or the folder holds no image file.
    """
    path = Path(input_path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise FileNotFoundError(f"--input {str(path)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)}).")
        return files
    raise FileNotFoundError(f"--input {str(path)!r} does not exist.")


def predict(bundle: str, input_path: str | os.PathLike, output_dir: str | os.PathLike,
            checkpoint: str | os.PathLike | None = None, device: str = "auto", dataset: str | None = None,
            overrides: dict[str, Any] | None = None) -> list[Path]:
    """Segment images with a bundle and write NIfTI label maps with the input geometry.

    Runs the bundle's ``configs/inference.json`` (``run``: a MONAI ``SupervisedEvaluator`` whose
    :class:`svseg.inference.PredictionSaver` writes ``<output_dir>/<case>_seg.nii.gz``). Each
    written NIfTI is checked to have the input's shape and affine.

    Args:
        bundle: bundle name (e.g. ``msa2net``).
        input_path: one image file or a folder of images.
        output_dir: folder for the label maps.
        checkpoint: weights (``model.pt`` or an svseg ``checkpoint_*.pt``); default the bundle's ``ckpt_path``.
        device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        dataset: data set whose rules (classes, intensity) the network was trained with
            (default the bundle's ``dataset_name``).
        overrides: more config overrides (e.g. ``{"roi_size": [224, 224]}``).

    Returns:
        The written files.

    Raises:
        FileNotFoundError: missing input, bundle or checkpoint.
    """
    bundle_dir(bundle)
    files = input_files(input_path)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {str(checkpoint)!r} does not exist.")
    out = Path(output_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    override: dict[str, Any] = {"device": device, "prediction_dir": str(out)}
    if checkpoint is not None:
        override["ckpt_path"] = str(Path(checkpoint).absolute())
    if dataset is not None:
        override["dataset_name"] = dataset
    override.update(overrides or {})
    # the bundle reads a folder: stage a single file (a link) in a temporary one
    with tempfile.TemporaryDirectory(prefix="svseg-predict-") as staging:
        if Path(input_path).is_file():
            link = Path(staging) / files[0].name
            try:
                link.symlink_to(files[0].absolute())
            except OSError:
                shutil.copy2(files[0], link)
            override["input_dir"] = staging
        else:
            override["input_dir"] = str(Path(input_path).absolute())
        run_bundle("run", bundle, ("inference.json",), **override)
    written = []
    for f in files:
        target = out / f"{case_name(f)}_seg.nii.gz"
        if not target.is_file():
            raise FileNotFoundError(f"the bundle did not write {target} for {f}.")
        _check_geometry(f, target)
        written.append(target)
    return written


def _check_geometry(image: Path, pred: Path) -> None:
    if not image.name.lower().endswith(_NIFTI):
        return
    a, b = nib.load(str(image)), nib.load(str(pred))
    shape_a = a.shape[:3]
    if b.shape[:3] != shape_a or not np.allclose(a.affine, b.affine, atol=1e-4):
        logger.warning(f"{pred.name}: shape {b.shape[:3]} / affine differ from the input {image.name} {shape_a}; "
                       "the bundle's preprocessing changed the geometry.")
