"""SYNTHETIC cross-validation material for the fold / ensemble / find-best tests.

* :func:`planned_blobs`: a small nnU-Net v2 raw data set of SYNTHETIC blobs (tests/data/own_layouts.py),
  planned with two folds.
* :func:`probabilities`: class probabilities that put ``p`` on a given label map.
* :func:`fake_fold_run`: the files a trained fold run leaves (``models/model.pt`` as placeholder bytes,
  ``models/svseg_model.json``, ``validation/<case>.npz`` + label map + ``predictions.json``), written by
  svseg's own writers, without training a network: the find-best and ensemble logic is then tested on
  probabilities whose scores are known by construction.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from svseg.bundle.folds import CV_MARKER, VALIDATION_DIR
from svseg.data import plan_datalist, plan_dataset
from svseg.inference import write_nifti, write_probabilities
from tests.data.own_layouts import write_nnunet_3d

CLASSES = ["background", "core", "rim"]


def planned_blobs(root: Path, n_cases: int = 4, n_folds: int = 2) -> Path:
    ds = write_nnunet_3d(root, n_cases=n_cases, n_test=1, use_nnunetv2=False)
    plan_dataset(ds, n_folds=n_folds)
    return ds


def probabilities(labels: np.ndarray, n_classes: int = 3, p: float = 0.8) -> np.ndarray:
    """``(K, *labels.shape)`` float32: ``p`` on each voxel's label, the rest shared by the other classes."""
    out = np.full((n_classes, *labels.shape), (1.0 - p) / (n_classes - 1), np.float32)
    np.put_along_axis(out, labels[None].astype(np.int64), p, axis=0)
    return out


def fake_fold_run(run: Path, bundle: str, dataset: Path, fold: int,
                  probs_of: Callable[[str, np.ndarray], np.ndarray], class_names=CLASSES) -> Path:
    """A fold run folder with the validation probabilities ``probs_of(case, reference labels)`` of ``fold``."""
    import nibabel as nib

    (run / "models").mkdir(parents=True, exist_ok=True)
    (run / "models" / "model.pt").write_bytes(b"placeholder weights (synthetic test run)")
    info = {"network": "X", "dataset_name": str(dataset), "class_names": list(class_names), "fold": fold,
            "in_channels": 1}
    (run / "models" / "svseg_model.json").write_text(json.dumps(info))
    out = run / VALIDATION_DIR
    items = plan_datalist(dataset, "validation", fold)
    for item in items:
        ref = np.asarray(nib.load(item["label"]).dataobj).astype(np.uint8)
        probs = probs_of(item["case"], ref)
        write_probabilities(probs, out / f"{item['case']}.npz", class_names, dtype="float32")
        write_nifti(np.argmax(probs, axis=0).astype(np.uint8), item["label"], out / f"{item['case']}_seg.nii.gz")
    doc = {"bundle": bundle, "dataset_name": str(dataset), "fold": fold, "class_names": list(class_names),
           "cases": sorted(i["case"] for i in items), "checkpoint": "models/model.pt"}
    (out / CV_MARKER).write_text(json.dumps(doc))
    return run
