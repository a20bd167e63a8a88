"""What every converter shares: input checks, the output folder, case selection, the final files."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from svseg.data.datalist import write_datalist
from svseg.data.demo import default_data_dir
from svseg.data.layout import LayoutWriter
from svseg.data.specs import DatasetSpec
from svseg.io import AtomicDirectory, PathLike, atomic_save_json, load_nifti

__all__ = [
    "CONVERTER_VERSION",
    "STAMP_NAME",
    "ConversionError",
    "default_output_dir",
    "load_volume",
    "check_image_values",
    "check_label_values",
    "check_pair",
    "with_progress",
    "output_folder",
    "select_cases",
    "converting",
    "finish_conversion",
]

CONVERTER_VERSION = 1
STAMP_NAME = "svseg_prepare.json"


class ConversionError(ValueError):
    """An input file is unusable; the message names the file and the problem."""


def default_output_dir(name: str) -> Path:
    """``$SVSEG_DATA_DIR/<name>`` (``SVSEG_DATA_DIR`` defaults to ``~/.cache/svseg``)."""
    return default_data_dir() / name


def load_volume(path: str | os.PathLike, what: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI volume as ``(array, affine)``, with errors that name the file.

    Trailing singleton dimensions (``(X, Y, Z, 1)``) are dropped.

    Raises:
        FileNotFoundError: the file does not exist.
        ConversionError: unreadable (corrupt gzip, truncated file) or not a 3D volume.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found.")
    try:
        data, affine, _ = load_nifti(path)
    except Exception as e:  # noqa: BLE001 - nibabel/gzip/zlib raise many types; report them all
        raise ConversionError(f"{path}: cannot read the {what} (corrupt or truncated file/gzip?): {type(e).__name__}: {e}") from e
    if what == "image" and data.dtype == np.float64:
        data = data.astype(np.float32)  # scaled NIfTI data come as float64; halve the memory
    if data.ndim != 3:
        raise ConversionError(f"{path}: expected a 3D {what} volume, got an array of shape {tuple(data.shape)}.")
    if min(data.shape) < 1:
        raise ConversionError(f"{path}: the {what} volume is empty (shape {tuple(data.shape)}).")
    return data, affine


def check_image_values(image: np.ndarray, path: Path) -> None:
    """Raise :class:`ConversionError` (naming ``path``) for a non-numeric image or NaN/Inf voxels."""
    if not np.issubdtype(image.dtype, np.number):
        raise ConversionError(f"{path}: image has non-numeric dtype {image.dtype}.")
    if np.issubdtype(image.dtype, np.floating):
        bad = ~np.isfinite(image)
        if bad.any():
            raise ConversionError(f"{path}: image holds {int(bad.sum())} NaN/Inf voxels.")


def check_label_values(label: np.ndarray, path: Path, allowed: Iterable[int], allow_empty: bool) -> np.ndarray:
    """``label`` as int16 after checking (naming ``path``) that it holds whole label ids within
    ``allowed`` and, unless ``allow_empty``, some foreground; raises :class:`ConversionError`."""
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
    check_image_values(image, image_path)
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
    label = check_label_values(label, label_path, allowed_labels, allow_empty)
    return image, label, affine


def with_progress(items: Sequence[Any], desc: str, enabled: bool) -> Iterable[Any]:
    """``items`` with a tqdm progress bar when ``enabled``."""
    return tqdm(items, desc=desc, unit="case") if enabled else items


def output_folder(name: str, output: PathLike | None, overwrite: bool) -> Path:
    """The absolute output folder (default :func:`default_output_dir`), refused when it exists,
    is not empty and ``overwrite`` is False (``FileExistsError``)."""
    out = (Path(output).expanduser() if output is not None else default_output_dir(name)).absolute()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"output folder {out} already exists and is not empty; pass overwrite=True to replace it.")
    return out


def select_cases(
    official: Mapping[str, Sequence[str]], found: Mapping[str, Any], cases: Sequence[str] | None, source: Path, what: Callable[[str], str]
) -> dict[str, list[str]]:
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


@contextlib.contextmanager
def converting(output: Path, overwrite: bool, **layout: Any) -> Iterator[LayoutWriter]:
    """A :class:`~svseg.data.layout.LayoutWriter` (options ``layout``) on the temporary folder of
    an :class:`~svseg.io.AtomicDirectory` that becomes ``output`` when the block succeeds."""
    with AtomicDirectory(output, overwrite=overwrite) as tmp:
        yield LayoutWriter(tmp, **layout)


def finish_conversion(writer: LayoutWriter, spec: DatasetSpec, stamp: dict[str, Any], description: str) -> None:
    """Write the TransUNet lists, ``dataset.json`` and the ``svseg_prepare.json`` stamp."""
    writer.write_lists()
    write_datalist(
        writer.root / "dataset.json",
        writer.lists,
        labels=spec.class_names,
        relative_to=writer.root,
        name=spec.name,
        description=description,
        tensorImageSize="3D",
        modality={"0": spec.modality},
        svseg={"dataset": spec.name, "prepared": True, "intensity": dict(spec.intensity), "converter_version": CONVERTER_VERSION},
    )
    atomic_save_json(stamp, writer.root / STAMP_NAME)
