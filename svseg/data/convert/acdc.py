"""ACDC cardiac cine-MRI: the training release (ED/ES frames from ``Info.cfg``) or MT-UNet's preprocessed npz."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from svseg.data.convert import common
from svseg.data.specs import get_dataset
from svseg.data.transforms import apply_intensity

__all__ = ["read_acdc_info", "convert_acdc"]

logger = logging.getLogger(__name__)


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
            raise common.ConversionError(f"{path}: no integer {key!r} frame entry (found {info.get(key)!r}).")
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
    patients of :func:`svseg.data.specs.get_dataset` ``("acdc")``.

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
    output = common.output_folder("acdc", output, overwrite)
    base, found = _acdc_cases(source)
    splits = common.select_cases(dict(spec.splits), found, cases, base, lambda c: f"{c}/ folder")
    todo = [(split, c) for split, ids in splits.items() for c in ids]
    with common.converting(output, overwrite, nifti=True, transunet=True) as w:
        frames: dict[str, dict[str, int]] = {}
        for split, patient in common.with_progress(todo, "acdc", progress):
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
                image, label, affine = common.check_pair(img_p, lab_p, spec.label_ids)
                w.add(f"{patient}_{phase}", split, apply_intensity(image, spec.intensity), label, affine)
                frames[patient][phase] = frame
        common.finish_conversion(
            w,
            spec,
            {"dataset": "acdc", "version": common.CONVERTER_VERSION, "source": str(source), "splits": splits, "frames": frames},
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
                raise common.ConversionError(f"{path}: array(s) {missing} missing; the file holds {sorted(z.files)}.")
            img, lab = np.asarray(z["img"]), np.asarray(z["label"])
    except common.ConversionError:
        raise
    except Exception as e:  # noqa: BLE001
        raise common.ConversionError(f"{path}: cannot read the npz file (truncated or corrupt?): {type(e).__name__}: {e}") from e
    for key, arr in (("img", img), ("label", lab)):
        if arr.ndim != want_ndim:
            raise common.ConversionError(f"{path}: {key!r} has shape {tuple(arr.shape)}; expected a {want_ndim}D array.")
    if img.shape != lab.shape:
        raise common.ConversionError(f"{path}: img shape {img.shape} differs from label shape {lab.shape}.")
    common.check_image_values(img, path)
    return img, lab


def _convert_acdc_mtunet(
    root: Path, output: str | os.PathLike | None, *, cases: Sequence[str] | None, overwrite: bool, progress: bool
) -> Path:
    """The MT-UNet preprocessed ACDC (see :func:`convert_acdc`)."""
    spec = get_dataset("acdc")
    output = common.output_folder("acdc", output, overwrite)
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
                raise common.ConversionError(f"{f}: patient {patient} appears in two split folders.")
    found = {p: True for p in folder_split}
    splits = common.select_cases(dict(spec.splits), found, cases, root, lambda c: f"case_{c[-3:]} files")
    for split, ids in splits.items():
        moved = [c for c in ids if folder_split[c] != split]
        if moved:
            logger.warning("%s: patients %s lie in another split folder than svseg's %s split; svseg's split is used.", root, moved, split)
    todo = [(split, c) for split, ids in splits.items() for c in ids]
    with common.converting(output, overwrite, nifti=True, transunet=True) as w:
        for split, patient in common.with_progress(todo, "acdc (MT-UNet layout)", progress):
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
                        raise common.ConversionError(f"{parts[0][1].parent}: slices of {patient} {phase} are not numbered 0..{len(idx) - 1} (found {idx}).")
                    pairs = [_read_mtunet(f, 2) for _, f in parts]
                    if len({p[0].shape for p in pairs}) != 1:
                        raise common.ConversionError(f"{parts[0][1]}: the slices of {patient} {phase} differ in shape.")
                    path = parts[0][1]
                    image = np.stack([p[0].T for p in pairs], axis=-1)
                    label = np.stack([p[1].T for p in pairs], axis=-1)
                label = common.check_label_values(label, path, spec.label_ids, allow_empty=False)
                w.add(f"{patient}_{phase}", split, apply_intensity(image, spec.intensity), label, np.eye(4))
        common.finish_conversion(
            w,
            spec,
            {"dataset": "acdc", "version": common.CONVERTER_VERSION, "source": str(root), "layout": "mtunet", "splits": splits},
            "ACDC cine-MRI from the MT-UNet preprocessed release (no spacing: identity affine), per-volume percentile "
            "min-max to [0, 1]; 70 / 10 / 20 patient split.",
        )
    return output
