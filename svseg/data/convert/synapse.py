"""Synapse multi-organ CT (BTCV): the raw release, or an existing TransUNet folder validated in place."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from svseg.data.convert import common
from svseg.data.datalist import transunet_datalist, write_datalist
from svseg.data.specs import SYNAPSE_BTCV_TO_TRANSUNET, get_dataset
from svseg.data.transforms import ct_window
from svseg.io import atomic_save_text

__all__ = ["convert_synapse", "validate_transunet_folder"]

logger = logging.getLogger(__name__)


def _synapse_raw_cases(source: Path) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    base = source
    for cand in (source, source / "Training", source / "RawData" / "Training"):
        if (cand / "img").is_dir():
            base = cand
            break
    else:
        raise FileNotFoundError(
            f"{source}: no img/ folder found; expected the BTCV release (img/imgXXXX.nii.gz, label/labelXXXX.nii.gz) "
            "or a TransUNet folder (train_npz/, test_vol_h5/)."
        )
    found = {}
    for f in sorted((base / "img").glob("img*.nii*")):
        m = re.match(r"img(\d+)\.nii(\.gz)?$", f.name)
        if m:
            found[f"case{int(m.group(1)):04d}"] = (f, base / "label" / f.name.replace("img", "label", 1))
    return base, found


def convert_synapse(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    cases: Sequence[str] | None = None,
    window: tuple[float, float] = (-125.0, 275.0),
    nifti: bool = True,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Convert the Synapse multi-organ CT (BTCV) release, or validate a TransUNet folder.

    Args:
        source: the BTCV ``RawData/Training`` folder (``img/imgXXXX.nii.gz``,
            ``label/labelXXXX.nii.gz``), or an existing TransUNet folder (``train_npz/``,
            ``test_vol_h5/``), which is validated as it is (see :func:`validate_transunet_folder`).
        output: destination (default ``$SVSEG_DATA_DIR/synapse``; for a TransUNet folder, the
            folder itself).
        cases: convert only these case ids (``case0001`` ...); default: all 30 of the TransUNet split.
        window: HU window clipped and scaled to [0, 1] (TransUNet: [-125, 275]).
        nifti: also write the NIfTI volumes (the TransUNet layout is always written).
        overwrite: replace an existing output folder.
        progress: show a progress bar.

    The 13 BTCV labels become the 8 TransUNet organs (``SYNAPSE_BTCV_TO_TRANSUNET``: aorta 8->1,
    gallbladder 4->2, left kidney 3->3, right kidney 2->4, liver 6->5, pancreas 11->6,
    spleen 1->7, stomach 7->8; the other five -> background).
    """
    source = Path(source).expanduser().absolute()
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source folder not found.")
    if (source / "train_npz").is_dir() or (source / "test_vol_h5").is_dir():
        return validate_transunet_folder(source, output, dataset="synapse", progress=progress)
    spec = get_dataset("synapse")
    output = common.output_folder("synapse", output, overwrite)
    base, found = _synapse_raw_cases(source)
    splits = common.select_cases(
        {k: v for k, v in spec.splits.items() if v}, found, cases, base, lambda c: f"img/img{c[4:]}.nii.gz"
    )
    lut = np.zeros(14, dtype=np.int16)
    for src, dst in SYNAPSE_BTCV_TO_TRANSUNET.items():
        lut[src] = dst
    todo = [(split, c) for split, ids in splits.items() for c in ids]
    with common.converting(output, overwrite, nifti=nifti, transunet=True) as w:
        for split, case in common.with_progress(todo, "synapse", progress):
            img_p, lab_p = found[case]
            image, label, affine = common.check_pair(img_p, lab_p, range(14))
            w.add(case, split, ct_window(image, *window), lut[label], affine)
        common.finish_conversion(
            w,
            spec,
            {"dataset": "synapse", "version": common.CONVERTER_VERSION, "source": str(source), "window": list(window), "splits": splits},
            "Synapse multi-organ CT (BTCV), TransUNet protocol: 18 training / 12 test cases, HU [-125, 275] -> [0, 1].",
        )
    return output


def validate_transunet_folder(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    dataset: str = "synapse",
    progress: bool = True,
) -> Path:
    """Check a TransUNet folder as it is and write its ``dataset.json`` (and missing ``lists/``).

    Every npz slice listed in ``lists/train.txt`` (all of ``train_npz`` without the list) and
    every H5 volume in ``lists/test_vol.txt`` (all of ``test_vol_h5``) is opened and checked:
    keys ``image`` and ``label``, 2D slices / 3D volumes, equal image and label shapes, finite
    intensities, label ids within the data set's classes. ``dataset.json`` goes to ``output``
    (default: the folder itself) with paths to the files in place.
    """
    source = Path(source).expanduser().absolute()
    spec = get_dataset(dataset)
    output = Path(output).expanduser().absolute() if output is not None else source
    allowed = spec.label_ids
    lists = transunet_datalist(source)
    if not lists["training"] and not lists["test"]:
        raise common.ConversionError(f"{source}: the TransUNet folder holds no npz slices and no H5 volumes.")
    checks = [("npz", e) for e in lists["training"]] + [("h5", e) for e in lists["test"] + lists["validation"]]
    for kind, entry in common.with_progress(checks, f"{dataset}: checking", progress):
        path = Path(entry["image"].rsplit("::", 1)[0])
        arrays = {}
        try:
            if kind == "npz":
                with np.load(path, allow_pickle=False) as z:
                    for key in ("image", "label"):
                        if key not in z.files:
                            raise common.ConversionError(f"{path}: array {key!r} missing; the file holds {sorted(z.files)}.")
                        arrays[key] = np.asarray(z[key])
            else:
                with h5py.File(path, "r") as f:
                    for key in ("image", "label"):
                        if key not in f:
                            raise common.ConversionError(f"{path}: dataset {key!r} missing; the file holds {sorted(f.keys())}.")
                        arrays[key] = np.asarray(f[key][()])
        except common.ConversionError:
            raise
        except Exception as e:  # noqa: BLE001
            raise common.ConversionError(f"{path}: cannot read the {kind} file (truncated or corrupt?): {type(e).__name__}: {e}") from e
        want = 2 if kind == "npz" else 3
        for key, arr in arrays.items():
            if arr.ndim != want:
                raise common.ConversionError(f"{path}: {key!r} has shape {tuple(arr.shape)}; a {kind} file must hold {want}D arrays.")
        if arrays["image"].shape != arrays["label"].shape:
            raise common.ConversionError(f"{path}: image shape {arrays['image'].shape} differs from label shape {arrays['label'].shape}.")
        common.check_image_values(arrays["image"], path)
        common.check_label_values(arrays["label"], path, allowed, allow_empty=True)
    list_dir = source / "lists"
    if not (list_dir / "train.txt").is_file() and output == source:
        atomic_save_text("".join(f"{Path(e['image'].rsplit('::', 1)[0]).stem}\n" for e in lists["training"]), list_dir / "train.txt")
    if not (list_dir / "test_vol.txt").is_file() and output == source:
        atomic_save_text("".join(f"{e['case']}\n" for e in lists["test"]), list_dir / "test_vol.txt")
    output.mkdir(parents=True, exist_ok=True)
    write_datalist(
        output / "dataset.json",
        lists,
        labels=spec.class_names,
        name=spec.name,
        description=f"{spec.title}: existing TransUNet folder {source}, validated by svseg.",
        tensorImageSize="3D",
        modality={"0": spec.modality},
        svseg={"dataset": spec.name, "prepared": True, "intensity": "already applied (TransUNet preprocessing)", "source": str(source)},
    )
    train_cases = sorted({e["case"] for e in lists["training"]})
    test_cases = [e["case"] for e in lists["test"]]
    official = {"training": set(spec.split("training")), "test": set(spec.split("test"))}
    if dataset == "synapse" and (set(train_cases) != official["training"] or set(test_cases) != official["test"]):
        logger.warning("%s: the case lists differ from the TransUNet split (%d training, %d test cases).", source, len(train_cases), len(test_cases))
    return output
