"""Converters from the published downloads of Synapse (BTCV), LiTS and ACDC to svseg's layouts.

One call makes a download trainable, with the published split::

    from svseg.data import prepare
    prepare("synapse", "/data/BTCV/RawData/Training", "/data/svseg/synapse")
    prepare("lits", "/data/LiTS", "/data/svseg/lits", window=(-250, 250))
    prepare("acdc", "/data/ACDC/database/training", "/data/svseg/acdc")
    prepare("demo")                      # the offline demonstration set

(also ``python -m data_prep.<dataset>`` and ``svseg prepare <dataset>``). What each writes:

* NIfTI volumes (``imagesTr/``, ``labelsTr/`` for training and validation cases, ``imagesTs/``,
  ``labelsTs/`` for test cases) with the **original affine and spacing**, intensities already
  normalised by the data set's rule and labels remapped to the svseg label ids, plus a
  Decathlon-style ``dataset.json`` (``training`` / ``validation`` / ``test``).
* The TransUNet layout where the papers use it (Synapse, ACDC; LiTS with ``slices=True``):
  ``train_npz/<case>_sliceNNN.npz`` (2D ``image``/``label``, float32, (H, W) = (y, x)) for
  training cases, ``test_vol_h5/<case>.npy.h5`` ((D, H, W) = (z, y, x) ``image``/``label`` with
  ``affine`` and ``spacing`` attributes, so HD95 can be reported in mm) for validation and test
  cases, and ``lists/{train.txt,val_vol.txt,test_vol.txt}``.
* ``svseg_prepare.json``: the data set, the options and the converted cases.

Every input is checked before anything is written for it, and each problem raises an error that
names the file: a missing file (``FileNotFoundError``), a corrupt gzip or truncated H5, a 2D file
where a volume is expected, image/label shape or affine mismatch, label ids outside the data
set's set, NaN/Inf intensities, an empty label volume (:class:`ConversionError`, a
``ValueError``). The output tree is built in a temporary folder and renamed at the end, so a
failed conversion leaves no output behind.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from svseg.data._io import AtomicDirectory, atomic_write_json, atomic_write_text, save_h5, save_nifti, save_npz
from svseg.data.datalist import write_datalist
from svseg.data.datasets import SYNAPSE_BTCV_TO_TRANSUNET, DatasetSpec, get_dataset, kfold_split
from svseg.data.transforms import apply_intensity, ct_window

__all__ = [
    "ConversionError",
    "prepare",
    "convert_synapse",
    "convert_lits",
    "convert_acdc",
    "validate_transunet_folder",
    "load_volume",
    "check_pair",
    "read_acdc_info",
    "default_output_dir",
]

logger = logging.getLogger(__name__)

CONVERTER_VERSION = 1
STAMP_NAME = "svseg_prepare.json"


class ConversionError(ValueError):
    """An input file is unusable; the message names the file and the problem."""


def default_output_dir(name: str) -> Path:
    """``$SVSEG_DATA_DIR/<name>`` (``SVSEG_DATA_DIR`` defaults to ``~/.cache/svseg``)."""
    from svseg.data.demo import default_data_dir

    return default_data_dir() / name


# --------------------------------------------------------------------------------------------
# reading and checking inputs
# --------------------------------------------------------------------------------------------


def load_volume(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI volume as ``(array, affine)``, with errors that name the file.

    Trailing singleton dimensions (``(X, Y, Z, 1)``) are dropped.

    Raises:
        FileNotFoundError: the file does not exist.
        ConversionError: unreadable (corrupt gzip, truncated file) or not a 3D volume.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found.")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - nibabel/gzip/zlib raise many types; report them all
        raise ConversionError(f"{path}: cannot read the {what} (corrupt or truncated file/gzip?): {type(e).__name__}: {e}") from e
    if what == "image" and data.dtype == np.float64:
        data = data.astype(np.float32)  # scaled NIfTI data come as float64; halve the memory
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ConversionError(f"{path}: expected a 3D {what} volume, got an array of shape {tuple(data.shape)}.")
    if min(data.shape) < 1:
        raise ConversionError(f"{path}: the {what} volume is empty (shape {tuple(data.shape)}).")
    return data, affine


def _check_image_values(image: np.ndarray, path: Path) -> None:
    if not np.issubdtype(image.dtype, np.number):
        raise ConversionError(f"{path}: image has non-numeric dtype {image.dtype}.")
    if np.issubdtype(image.dtype, np.floating):
        bad = ~np.isfinite(image)
        if bad.any():
            raise ConversionError(f"{path}: image holds {int(bad.sum())} NaN/Inf voxels.")


def _check_label_values(label: np.ndarray, path: Path, allowed: Iterable[int], allow_empty: bool) -> np.ndarray:
    allowed = sorted(set(int(a) for a in allowed))
    if np.issubdtype(label.dtype, np.floating):
        if not np.all(np.isfinite(label)):
            raise ConversionError(f"{path}: label holds NaN/Inf values.")
        rounded = np.rint(label)
        if not np.array_equal(rounded, label):
            raise ConversionError(f"{path}: label holds non-integer values (e.g. {label[rounded != label].ravel()[0]}).")
        label = rounded
    ids = np.unique(label).astype(np.int64)
    extra = sorted(set(ids.tolist()) - set(allowed))
    if extra:
        raise ConversionError(f"{path}: label ids {extra} are outside the dataset's set {allowed}.")
    if not allow_empty and not np.any(label != 0):
        raise ConversionError(f"{path}: the label volume is empty (background only).")
    return label.astype(np.int16)


def check_pair(
    image_path: str | os.PathLike,
    label_path: str | os.PathLike | None,
    allowed_labels: Iterable[int],
    allow_empty: bool = False,
    atol: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Load and check one image/label pair; returns ``(image, label, affine)``.

    Checks: both files exist and are readable 3D volumes; equal shapes; affines equal within
    ``atol`` (mm); finite image intensities; integer label ids inside ``allowed_labels``; a
    non-empty label volume (unless ``allow_empty``).
    """
    image_path = Path(image_path)
    image, affine = load_volume(image_path, "image")
    _check_image_values(image, image_path)
    if label_path is None:
        return image, None, affine
    label_path = Path(label_path)
    label, l_affine = load_volume(label_path, "label")
    if label.shape != image.shape:
        raise ConversionError(
            f"{label_path}: label shape {tuple(label.shape)} does not match image {image_path.name} shape {tuple(image.shape)}."
        )
    if not np.allclose(affine, l_affine, atol=atol, rtol=0):
        diff = float(np.abs(affine - l_affine).max())
        raise ConversionError(
            f"{label_path}: label affine differs from the affine of image {image_path.name} (max difference {diff:.4g})."
        )
    label = _check_label_values(label, label_path, allowed_labels, allow_empty)
    return image, label, affine


def _spacing(affine: np.ndarray) -> list[float]:
    return [float(v) for v in np.sqrt((affine[:3, :3] ** 2).sum(axis=0))]


# --------------------------------------------------------------------------------------------
# writing outputs
# --------------------------------------------------------------------------------------------


@dataclass
class _Writer:
    """Collects the files of one conversion inside the temporary output folder."""

    root: Path
    spec: DatasetSpec
    nifti: bool = True
    transunet: bool = True
    h5_for_training: bool = False
    lists: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"training": [], "validation": [], "test": []})
    train_slices: list[str] = field(default_factory=list)
    vol_lists: dict[str, list[str]] = field(default_factory=lambda: {"validation": [], "test": []})

    def add(self, case: str, split: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> None:
        image = np.asarray(image, dtype=np.float32)
        label = np.asarray(label)
        if self.nifti:
            img_dir, lab_dir = ("imagesTs", "labelsTs") if split == "test" else ("imagesTr", "labelsTr")
            img_p = save_nifti(self.root / img_dir / f"{case}.nii.gz", image, affine)
            lab_p = save_nifti(self.root / lab_dir / f"{case}.nii.gz", label.astype(np.uint8), affine)
            self.lists[split].append({"image": str(img_p), "label": str(lab_p), "case": case})
        if self.transunet:
            img_t = np.ascontiguousarray(image.transpose(2, 1, 0))  # (z, y, x) = (D, H, W)
            lab_t = np.ascontiguousarray(label.transpose(2, 1, 0).astype(np.float32))
            if split == "training":
                for k in range(img_t.shape[0]):
                    name = f"{case}_slice{k:03d}"
                    save_npz(self.root / "train_npz" / f"{name}.npz", image=img_t[k], label=lab_t[k])
                    self.train_slices.append(name)
            if split != "training" or self.h5_for_training:
                save_h5(
                    self.root / "test_vol_h5" / f"{case}.npy.h5",
                    {"image": img_t, "label": lab_t},
                    attrs={"affine": affine, "spacing": np.asarray(_spacing(affine)), "axes": "zyx"},
                )
                if split != "training":
                    self.vol_lists[split].append(case)
            if not self.nifti:
                h5 = self.root / "test_vol_h5" / f"{case}.npy.h5"
                if split != "training":
                    self.lists[split].append({"image": f"{h5}::image", "label": f"{h5}::label", "case": case})

    def finish(self, stamp: dict[str, Any], description: str) -> None:
        if self.transunet:
            atomic_write_text(self.root / "lists" / "train.txt", "".join(f"{n}\n" for n in self.train_slices))
            atomic_write_text(self.root / "lists" / "val_vol.txt", "".join(f"{n}\n" for n in self.vol_lists["validation"]))
            atomic_write_text(self.root / "lists" / "test_vol.txt", "".join(f"{n}\n" for n in self.vol_lists["test"]))
            if not self.nifti:
                for name in self.train_slices:
                    f = self.root / "train_npz" / f"{name}.npz"
                    case, sl = re.match(r"(.+)_slice(\d+)$", name).groups()
                    self.lists["training"].append({"image": f"{f}::image", "label": f"{f}::label", "case": case, "slice": int(sl)})
        write_datalist(
            self.root / "dataset.json",
            self.lists,
            labels=self.spec.class_names,
            relative_to=self.root,
            name=self.spec.name,
            description=description,
            tensorImageSize="3D",
            modality={"0": self.spec.modality},
            svseg={"dataset": self.spec.name, "intensity": dict(self.spec.intensity), "converter_version": CONVERTER_VERSION},
        )
        atomic_write_json(self.root / STAMP_NAME, stamp)


def _progress(items: Sequence[Any], desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="case")


def _resolve_output(name: str, output: str | os.PathLike | None) -> Path:
    return (Path(output).expanduser() if output is not None else default_output_dir(name)).absolute()


def _check_output(output: Path, overwrite: bool) -> None:
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {output} already exists and is not empty; pass overwrite=True to replace it.")


def _select_cases(official: dict[str, tuple[str, ...]], found: dict[str, Any], cases: Sequence[str] | None, source: Path, what: Callable[[str], str]):
    """Map split -> cases to convert; without ``cases`` every official case must be present."""
    wanted = set(cases) if cases is not None else None
    if wanted is not None:
        known = {c for v in official.values() for c in v}
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(f"cases {unknown} are not in the published split of this dataset.")
    out: dict[str, list[str]] = {}
    for split, ids in official.items():
        chosen = [c for c in ids if wanted is None or c in wanted]
        missing = [c for c in chosen if c not in found]
        if missing:
            raise FileNotFoundError(f"{source}: {what(missing[0])} not found (case {missing[0]} of the {split} split; {len(missing)} missing in all).")
        out[split] = chosen
    return out


# --------------------------------------------------------------------------------------------
# Synapse (BTCV)
# --------------------------------------------------------------------------------------------


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
    output = _resolve_output("synapse", output)
    _check_output(output, overwrite)
    base, found = _synapse_raw_cases(source)
    splits = _select_cases(
        {k: v for k, v in spec.splits.items() if v}, found, cases, base, lambda c: f"img/img{c[4:]}.nii.gz"
    )
    lut = np.zeros(14, dtype=np.int16)
    for src, dst in SYNAPSE_BTCV_TO_TRANSUNET.items():
        lut[src] = dst
    todo = [(split, c) for split, ids in splits.items() for c in ids]
    with AtomicDirectory(output, overwrite=overwrite) as tmp:
        w = _Writer(tmp, spec, nifti=nifti, transunet=True)
        for split, case in _progress(todo, "synapse", progress):
            img_p, lab_p = found[case]
            image, label, affine = check_pair(img_p, lab_p, range(14))
            w.add(case, split, ct_window(image, *window), lut[label], affine)
        w.finish(
            {"dataset": "synapse", "version": CONVERTER_VERSION, "source": str(source), "window": list(window), "splits": splits},
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
    import h5py

    from svseg.data.datalist import transunet_datalist

    source = Path(source).expanduser().absolute()
    spec = get_dataset(dataset)
    output = Path(output).expanduser().absolute() if output is not None else source
    allowed = spec.label_ids
    lists = transunet_datalist(source)
    if not lists["training"] and not lists["test"]:
        raise ConversionError(f"{source}: the TransUNet folder holds no npz slices and no H5 volumes.")
    checks = [("npz", e) for e in lists["training"]] + [("h5", e) for e in lists["test"] + lists["validation"]]
    for kind, entry in _progress(checks, f"{dataset}: checking", progress):
        path = Path(entry["image"].rsplit("::", 1)[0])
        arrays = {}
        try:
            if kind == "npz":
                with np.load(path, allow_pickle=False) as z:
                    for key in ("image", "label"):
                        if key not in z.files:
                            raise ConversionError(f"{path}: array {key!r} missing; the file holds {sorted(z.files)}.")
                        arrays[key] = np.asarray(z[key])
            else:
                with h5py.File(path, "r") as f:
                    for key in ("image", "label"):
                        if key not in f:
                            raise ConversionError(f"{path}: dataset {key!r} missing; the file holds {sorted(f.keys())}.")
                        arrays[key] = np.asarray(f[key][()])
        except ConversionError:
            raise
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"{path}: cannot read the {kind} file (truncated or corrupt?): {type(e).__name__}: {e}") from e
        want = 2 if kind == "npz" else 3
        for key, arr in arrays.items():
            if arr.ndim != want:
                raise ConversionError(f"{path}: {key!r} has shape {tuple(arr.shape)}; a {kind} file must hold {want}D arrays.")
        if arrays["image"].shape != arrays["label"].shape:
            raise ConversionError(f"{path}: image shape {arrays['image'].shape} differs from label shape {arrays['label'].shape}.")
        _check_image_values(arrays["image"], path)
        _check_label_values(arrays["label"], path, allowed, allow_empty=True)
    list_dir = source / "lists"
    if not (list_dir / "train.txt").is_file() and output == source:
        atomic_write_text(list_dir / "train.txt", "".join(f"{Path(e['image'].rsplit('::', 1)[0]).stem}\n" for e in lists["training"]))
    if not (list_dir / "test_vol.txt").is_file() and output == source:
        atomic_write_text(list_dir / "test_vol.txt", "".join(f"{e['case']}\n" for e in lists["test"]))
    output.mkdir(parents=True, exist_ok=True)
    write_datalist(
        output / "dataset.json",
        lists,
        labels=spec.class_names,
        name=spec.name,
        description=f"{spec.title}: existing TransUNet folder {source}, validated by svseg.",
        tensorImageSize="3D",
        modality={"0": spec.modality},
        svseg={"dataset": spec.name, "intensity": "already applied (TransUNet preprocessing)", "source": str(source)},
    )
    train_cases = sorted({e["case"] for e in lists["training"]})
    test_cases = [e["case"] for e in lists["test"]]
    official = {"training": set(spec.split("training")), "test": set(spec.split("test"))}
    if dataset == "synapse" and (set(train_cases) != official["training"] or set(test_cases) != official["test"]):
        logger.warning("%s: the case lists differ from the TransUNet split (%d training, %d test cases).", source, len(train_cases), len(test_cases))
    return output


# --------------------------------------------------------------------------------------------
# LiTS
# --------------------------------------------------------------------------------------------


def _lits_cases(source: Path) -> dict[str, tuple[Path, Path]]:
    found: dict[str, tuple[Path, Path]] = {}
    for f in sorted(source.rglob("volume-*.nii*")):
        m = re.match(r"volume-(\d+)\.nii(\.gz)?$", f.name)
        if not m:
            continue
        case = f"volume-{int(m.group(1))}"
        if case in found:
            raise ConversionError(f"{f}: case {case} found twice (also {found[case][0]}).")
        seg = f.with_name(f.name.replace("volume-", "segmentation-", 1))
        found[case] = (f, seg)
    return found


def convert_lits(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    cases: Sequence[str] | None = None,
    window: tuple[float, float] = (-250.0, 250.0),
    fold: int | None = None,
    n_folds: int = 5,
    slices: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Convert the LiTS training release (``volume-N.nii`` / ``segmentation-N.nii``, N = 0..130).

    Args:
        source: folder holding the files (searched recursively, e.g. both "Training Batch" folders).
        output: destination (default ``$SVSEG_DATA_DIR/lits``).
        cases: convert only these ids (``volume-N``); default: all 131.
        window: HU window clipped and scaled to [0, 1] (AFMA clips to [-250, 250]).
        fold: with ``n_folds``, replace the fixed training/validation split by fold ``fold`` of a
            k-fold split over the 118 non-test volumes (the 13 test volumes stay fixed).
        n_folds: number of folds.
        slices: also write a 2D slice cache (``train_npz/`` + ``lists/train.txt``) and H5 test volumes.
        overwrite: replace an existing output folder.
        progress: show a progress bar.
    """
    source = Path(source).expanduser().absolute()
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source folder not found.")
    spec = get_dataset("lits")
    output = _resolve_output("lits", output)
    _check_output(output, overwrite)
    official = dict(spec.splits)
    if fold is not None:
        kf = kfold_split(official["training"] + official["validation"], n_folds, fold)
        official = {"training": kf["training"], "validation": kf["validation"], "test": official["test"]}
    found = _lits_cases(source)
    splits = _select_cases(official, found, cases, source, lambda c: f"{c}.nii")
    todo = [(split, c) for split, ids in splits.items() for c in ids]
    with AtomicDirectory(output, overwrite=overwrite) as tmp:
        w = _Writer(tmp, spec, nifti=True, transunet=slices)
        for split, case in _progress(todo, "lits", progress):
            image, label, affine = check_pair(*found[case], allowed_labels=spec.label_ids)
            w.add(case, split, ct_window(image, *window), label, affine)
        w.finish(
            {"dataset": "lits", "version": CONVERTER_VERSION, "source": str(source), "window": list(window), "fold": fold, "n_folds": n_folds, "splits": splits},
            f"LiTS liver/tumour CT, HU [{window[0]:g}, {window[1]:g}] -> [0, 1]; svseg fixed split" + (f", fold {fold}/{n_folds}" if fold is not None else "") + ".",
        )
    return output


# --------------------------------------------------------------------------------------------
# ACDC
# --------------------------------------------------------------------------------------------


def read_acdc_info(path: str | os.PathLike) -> dict[str, str]:
    """Parse an ACDC ``Info.cfg`` (``ED: 1``, ``ES: 12``, ``Group: DCM``, ...).

    Raises:
        FileNotFoundError: missing file.
        ConversionError: no integer ``ED`` / ``ES`` entries.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ACDC Info.cfg not found.")
    info: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            info[k.strip()] = v.strip()
    for key in ("ED", "ES"):
        if not re.fullmatch(r"\d+", info.get(key, "")):
            raise ConversionError(f"{path}: no integer {key!r} frame entry (found {info.get(key)!r}).")
    return info


def _acdc_cases(source: Path) -> tuple[Path, dict[str, Path]]:
    base = source
    for cand in (source, source / "training", source / "database" / "training"):
        if any(cand.glob("patient[0-9][0-9][0-9]")):
            base = cand
            break
    found = {p.name: p for p in sorted(base.glob("patient[0-9][0-9][0-9]")) if p.is_dir()}
    return base, found


def convert_acdc(
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    cases: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Convert the ACDC training release (``patientXXX/patientXXX_frameYY.nii.gz`` + ``_gt``, ``Info.cfg``).

    Each patient gives two volumes, ``patientXXX_ED`` and ``patientXXX_ES`` (frames from
    ``Info.cfg``). Intensity: per volume, clip to the 0.5 / 99.5 percentiles and scale to
    [0, 1]. Labels: 0 background, 1 RV, 2 Myo, 3 LV (as released). Split: the 70 / 10 / 20
    patients of :func:`svseg.data.datasets.get_dataset` ``("acdc")``.

    The preprocessed ACDC of MT-UNet that CASCADE-style code uses (``train/case_XXX_sliceED_N.npz``,
    ``valid/...``, ``test/case_XXX_volume_ED.npz``, keys ``img`` and ``label``) is accepted too: its
    slices are stacked back into volumes (slice order from the file names), checked, normalised by
    the same per-volume rule and written in the same layouts. That release carries no spacing,
    so those volumes get an identity affine (HD95 in voxels, as in the papers).

    Args:
        source: the ACDC ``training`` folder (or its ``database`` parent), or the MT-UNet
            preprocessed folder.
        output: destination (default ``$SVSEG_DATA_DIR/acdc``).
        cases: convert only these patients (``patient001`` ...); default: all 100.
        overwrite: replace an existing output folder.
        progress: show a progress bar.
    """
    source = Path(source).expanduser().absolute()
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source folder not found.")
    mtunet = _mtunet_acdc_root(source)
    if mtunet is not None:
        return _convert_acdc_mtunet(mtunet, output, cases=cases, overwrite=overwrite, progress=progress)
    spec = get_dataset("acdc")
    output = _resolve_output("acdc", output)
    _check_output(output, overwrite)
    base, found = _acdc_cases(source)
    splits = _select_cases(dict(spec.splits), found, cases, base, lambda c: f"{c}/ folder")
    todo = [(split, c) for split, ids in splits.items() for c in ids]
    with AtomicDirectory(output, overwrite=overwrite) as tmp:
        w = _Writer(tmp, spec, nifti=True, transunet=True)
        frames: dict[str, dict[str, int]] = {}
        for split, patient in _progress(todo, "acdc", progress):
            folder = found[patient]
            info = read_acdc_info(folder / "Info.cfg")
            frames[patient] = {}
            for phase in ("ED", "ES"):
                frame = int(info[phase])
                stem = f"{patient}_frame{frame:02d}"
                img_p = folder / f"{stem}.nii.gz"
                if not img_p.exists() and (folder / f"{stem}.nii").exists():
                    img_p = folder / f"{stem}.nii"
                lab_p = img_p.with_name(img_p.name.replace(stem, f"{stem}_gt"))
                image, label, affine = check_pair(img_p, lab_p, spec.label_ids)
                w.add(f"{patient}_{phase}", split, apply_intensity(image, spec.intensity), label, affine)
                frames[patient][phase] = frame
        w.finish(
            {"dataset": "acdc", "version": CONVERTER_VERSION, "source": str(source), "splits": splits, "frames": frames},
            "ACDC cine-MRI, ED and ES frames, per-volume percentile min-max to [0, 1]; 70 / 10 / 20 patient split (MT-UNet/CASCADE lists).",
        )
    return output


_MTUNET_SLICE = re.compile(r"case_(\d{3})_slice(ED|ES)_(\d+)\.npz$")
_MTUNET_VOLUME = re.compile(r"case_(\d{3})_volume_(ED|ES)\.npz$")


def _mtunet_acdc_root(source: Path) -> Path | None:
    for cand in (source, source / "ACDC"):
        if (cand / "train").is_dir() and any(_MTUNET_SLICE.match(p.name) for p in (cand / "train").glob("case_*.npz")):
            return cand
    return None


def _read_mtunet(path: Path, want_ndim: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("img", "label") if k not in z.files]
            if missing:
                raise ConversionError(f"{path}: array(s) {missing} missing; the file holds {sorted(z.files)}.")
            img, lab = np.asarray(z["img"]), np.asarray(z["label"])
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"{path}: cannot read the npz file (truncated or corrupt?): {type(e).__name__}: {e}") from e
    for key, arr in (("img", img), ("label", lab)):
        if arr.ndim != want_ndim:
            raise ConversionError(f"{path}: {key!r} has shape {tuple(arr.shape)}; expected a {want_ndim}D array.")
    if img.shape != lab.shape:
        raise ConversionError(f"{path}: img shape {img.shape} differs from label shape {lab.shape}.")
    _check_image_values(img, path)
    return img, lab


def _convert_acdc_mtunet(
    root: Path, output: str | os.PathLike | None, *, cases: Sequence[str] | None, overwrite: bool, progress: bool
) -> Path:
    """The MT-UNet preprocessed ACDC (see :func:`convert_acdc`)."""
    spec = get_dataset("acdc")
    output = _resolve_output("acdc", output)
    _check_output(output, overwrite)
    # patient -> phase -> list of (slice index, file) or a volume file; folder -> split
    slices: dict[str, dict[str, list[tuple[int, Path]]]] = {}
    volumes: dict[str, dict[str, Path]] = {}
    folder_split: dict[str, str] = {}
    for sub, split in (("train", "training"), ("valid", "validation"), ("test", "test")):
        for f in sorted((root / sub).glob("case_*.npz")) if (root / sub).is_dir() else []:
            m, v = _MTUNET_SLICE.match(f.name), _MTUNET_VOLUME.match(f.name)
            if m:
                patient = f"patient{int(m.group(1)):03d}"
                slices.setdefault(patient, {}).setdefault(m.group(2), []).append((int(m.group(3)), f))
            elif v:
                patient = f"patient{int(v.group(1)):03d}"
                volumes.setdefault(patient, {})[v.group(2)] = f
            else:
                continue
            if folder_split.setdefault(patient, split) != split:
                raise ConversionError(f"{f}: patient {patient} appears in two split folders.")
    found = {p: True for p in folder_split}
    splits = _select_cases(dict(spec.splits), found, cases, root, lambda c: f"case_{c[-3:]} files")
    for split, ids in splits.items():
        moved = [c for c in ids if folder_split[c] != split]
        if moved:
            logger.warning("%s: patients %s lie in another split folder than svseg's %s split; svseg's split is used.", root, moved, split)
    todo = [(split, c) for split, ids in splits.items() for c in ids]
    with AtomicDirectory(output, overwrite=overwrite) as tmp:
        w = _Writer(tmp, spec, nifti=True, transunet=True)
        for split, patient in _progress(todo, "acdc (MT-UNet layout)", progress):
            for phase in ("ED", "ES"):
                if phase in volumes.get(patient, {}):
                    path = volumes[patient][phase]
                    img, lab = _read_mtunet(path, 3)
                    image, label = img.transpose(2, 1, 0), lab.transpose(2, 1, 0)  # (D, H, W) -> (x, y, z)
                else:
                    parts = sorted(slices.get(patient, {}).get(phase, []))
                    if not parts:
                        raise FileNotFoundError(f"{root}: no case_{patient[-3:]}_slice{phase}_*.npz or _volume_{phase}.npz files for {patient}.")
                    idx = [k for k, _ in parts]
                    if idx != list(range(len(idx))):
                        raise ConversionError(f"{parts[0][1].parent}: slices of {patient} {phase} are not numbered 0..{len(idx) - 1} (found {idx}).")
                    pairs = [_read_mtunet(f, 2) for _, f in parts]
                    if len({p[0].shape for p in pairs}) != 1:
                        raise ConversionError(f"{parts[0][1]}: the slices of {patient} {phase} differ in shape.")
                    path = parts[0][1]
                    image = np.stack([p[0].T for p in pairs], axis=-1)
                    label = np.stack([p[1].T for p in pairs], axis=-1)
                label = _check_label_values(label, path, spec.label_ids, allow_empty=False)
                w.add(f"{patient}_{phase}", split, apply_intensity(image, spec.intensity), label, np.eye(4))
        w.finish(
            {"dataset": "acdc", "version": CONVERTER_VERSION, "source": str(root), "layout": "mtunet", "splits": splits},
            "ACDC cine-MRI from the MT-UNet preprocessed release (no spacing: identity affine), per-volume percentile "
            "min-max to [0, 1]; 70 / 10 / 20 patient split.",
        )
    return output


# --------------------------------------------------------------------------------------------
# one entry point
# --------------------------------------------------------------------------------------------


def prepare(name: str, source: str | os.PathLike | None = None, output: str | os.PathLike | None = None, **opts: Any) -> Path:
    """Make a data set trainable: convert a download (or build the demo) and return the folder.

    Args:
        name: ``synapse``, ``lits``, ``acdc`` or ``demo``.
        source: the downloaded release (not used for ``demo``).
        output: destination folder (default ``$SVSEG_DATA_DIR/<name>``).
        opts: options of the converter (:func:`convert_synapse`, :func:`convert_lits`,
            :func:`convert_acdc`, :func:`svseg.data.demo.prepare_demo`), e.g. ``overwrite=True``.

    Raises:
        ValueError: unknown name, or no ``source`` for a data set that needs one.
    """
    key = str(name).strip().lower()
    if key == "demo":
        from svseg.data.demo import prepare_demo

        if "overwrite" in opts:
            opts["force"] = opts.pop("overwrite")
        opts.pop("progress", None)
        return prepare_demo(output, **opts)
    converters = {"synapse": convert_synapse, "lits": convert_lits, "acdc": convert_acdc}
    if key not in converters:
        raise ValueError(f"unknown dataset name {name!r}; prepare() knows {sorted(converters) + ['demo']}.")
    if source is None:
        raise ValueError(f"source is required for dataset {key!r}: the folder of the downloaded release.")
    return converters[key](source, output, **opts)
