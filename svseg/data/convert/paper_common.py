"""What the converters of the five papers' published layouts share: layout recognition, mask reading,
the seeded splits and the nnU-Net v2 raw output.

Each converter (:mod:`~svseg.data.convert.svanet`, :mod:`~svseg.data.convert.uctransnet`,
:mod:`~svseg.data.convert.awesome_unet`, :mod:`~svseg.data.convert.msga`, :mod:`~svseg.data.convert.afma_lits`)
reads one published folder layout and writes svseg's own data set format, the **nnU-Net v2 raw layout**:

* ``imagesTr/<case>_0000<ending>`` (one file per channel; one RGB ``_0000.png`` holds the channels R, G, B),
  ``labelsTr/<case><ending>`` (class ids), ``imagesTs/`` and ``labelsTs/`` for the paper's test split;
* ``dataset.json``: ``channel_names``, ``labels`` ``{name: id}``, ``numTraining``, ``file_ending`` and an
  ``"svseg"`` block ``{"source_layout", "paper", "protocol", "split", "converter_version"}`` (``svseg plan``
  reads ``svseg.protocol``, so a bundle evaluates such a folder with the paper's protocol);
* ``splits_final.json``: nnU-Net's list of ``{"train": [...], "val": [...]}`` folds (the paper's split, its
  k folds or its seeded repeats);
* ``svseg_prepare.json``: the converter, its options and, per case, the source file(s) it came from.

Case ids are the source file stems with every character outside ``[A-Za-z0-9_-]`` replaced by ``_``
(``im1.nii_12`` -> ``im1_nii_12``), so that no id carries a file ending; two stems that collide are refused.
The output is built in a temporary folder and renamed at the end (:class:`~svseg.io.AtomicDirectory`):
a failed conversion leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from svseg.data.convert.common import CONVERTER_VERSION, STAMP_NAME, ConversionError
from svseg.io import AtomicDirectory, PathLike, atomic_save_json, atomic_save_nifti, read_image_2d

__all__ = [
    "IMAGE_ENDINGS",
    "PaperLayout",
    "LAYOUTS",
    "identify_layout",
    "require_layout",
    "case_id",
    "image_files",
    "read_rgb",
    "read_mask_values",
    "kfold_splits",
    "repeat_splits",
    "NnunetWriter",
    "nnunet_output",
    "filter_cases",
]

#: the 2D image endings the published layouts use
IMAGE_ENDINGS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class PaperLayout:
    """A published folder layout: its converter name, a one-line description and the test that recognises it."""

    def __init__(self, name: str, description: str, matches: Callable[[Path], bool]) -> None:
        self.name = name
        self.description = description
        self.matches = matches


def _has(folder: Path, *parts: str) -> bool:
    return folder.joinpath(*parts).is_dir()


def _svanet(folder: Path) -> bool:
    return _has(folder, "train") and _has(folder, "mask") and (_has(folder, "val") or _has(folder, "test"))


def _uctransnet(folder: Path) -> bool:
    return _has(folder, "Train_Folder", "img") and _has(folder, "Train_Folder", "labelcol")


def _awesome(folder: Path) -> bool:
    return _has(folder, "ISIC2018_Task1-2_Training_Input") and _has(folder, "ISIC2018_Task1_Training_GroundTruth")


def _msga(folder: Path) -> bool:
    return _has(folder, "train", "Img") and _has(folder, "train", "GT")


def _afma(folder: Path) -> bool:
    return _has(folder, "train") and any(p.suffix == ".npy" and "volume" in p.name for p in (folder / "train").iterdir())


#: the layouts the ``svseg prepare`` converters read, by converter name
LAYOUTS: dict[str, PaperLayout] = {
    "svanet": PaperLayout("svanet", "SvANet: train/, val/ or test/ (images) and mask/<stem>.png", _svanet),
    "uctransnet": PaperLayout("uctransnet", "UCTransNet / SA2-Net: Train_Folder/{img,labelcol}, Val_Folder/, Test_Folder/", _uctransnet),
    "awesome_unet": PaperLayout("awesome_unet", "Awesome-U-Net ISIC 2018: ISIC2018_Task1-2_Training_Input/*.jpg and "
                                "ISIC2018_Task1_Training_GroundTruth/*_segmentation.png", _awesome),
    "msga": PaperLayout("msga", "MSGA CHAOS: train|val|test/{Img,GT}/Subj_<X>slice_<Y>.png", _msga),
    "afma": PaperLayout("afma", "AFMA LiTS: train|val|test/ with *volume*.npy slices and *segmentation*.npy masks", _afma),
}


def identify_layout(folder: PathLike) -> str | None:
    """The name of the published layout ``folder`` holds (a key of :data:`LAYOUTS`), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for name, layout in LAYOUTS.items():
        if layout.matches(folder):
            return name
    return None


def require_layout(source: PathLike, name: str) -> Path:
    """``source`` as an absolute path after checking that it holds the layout ``name``.

    Raises:
        FileNotFoundError: ``source`` is not a folder.
        ConversionError: it holds another layout (the message names it and its converter) or none.
    """
    folder = Path(source).expanduser().absolute()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: source folder not found.")
    layout = LAYOUTS[name]
    if layout.matches(folder):
        return folder
    other = identify_layout(folder)
    hint = (f"; it holds the {LAYOUTS[other].description.split(':')[0]} layout instead: use `svseg prepare {other}`"
            if other else "")
    raise ConversionError(f"{folder}: not the {layout.description} layout{hint}.")


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def case_id(stem: str) -> str:
    """A case id from a file stem: characters outside ``[A-Za-z0-9_-]`` become ``_``."""
    return _UNSAFE.sub("_", stem)


def image_files(folder: Path, endings: Sequence[str] = IMAGE_ENDINGS) -> list[Path]:
    """The visible files of ``folder`` with one of ``endings`` (any letter case), sorted by name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found.")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(tuple(endings)))


def read_rgb(path: Path) -> np.ndarray:
    """An 8-bit image file as ``(H, W, 3)`` uint8 (a grey file is repeated into three channels, as OpenCV's
    ``imread`` and PIL's ``convert("RGB")`` in the authors' loaders do); errors name the file."""
    try:
        arr = read_image_2d(path)
    except ValueError as e:
        raise ConversionError(f"{path}: {e}") from e
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ConversionError(f"{path}: expected a 2D grey or RGB image, got an array of shape {tuple(arr.shape)}.")
    if arr.min() < 0 or arr.max() > 255 or not np.array_equal(arr, np.rint(arr)):
        raise ConversionError(f"{path}: expected 8-bit values 0..255, found {arr.min():g}..{arr.max():g}.")
    arr = np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr
    return np.ascontiguousarray(np.moveaxis(arr, 0, -1)).astype(np.uint8)


def read_mask_values(path: Path) -> np.ndarray:
    """The raw values of a 2D mask file as ``(H, W)`` integers: a palette PNG's indices, a grey file's values
    (an RGB file with equal channels counts as grey); a colour mask is refused, naming the file."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask file not found.")
    try:
        with Image.open(path) as img:
            img.load()
            arr = np.asarray(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ConversionError(f"{path}: cannot read the mask (corrupt or truncated file?): {e}") from e
    if arr.ndim == 3:
        if arr.shape[-1] in (2, 4):
            arr = arr[..., :-1]  # drop alpha
        if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, arr.shape[-1])):
            raise ConversionError(f"{path}: the mask is a colour image; expected grey values or palette indices.")
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ConversionError(f"{path}: expected a 2D mask, got an array of shape {tuple(arr.shape)}.")
    return arr.astype(np.int64)


def kfold_splits(cases: Sequence[str], n_folds: int, seed: int) -> list[dict[str, list[str]]]:
    """scikit-learn's ``KFold(n_splits, shuffle=True, random_state=seed)`` over ``cases`` (in the given order),
    as nnU-Net folds: the indices are shuffled by ``np.random.RandomState(seed)``, the first ``n % k`` folds
    hold one case more, each fold's validation cases are the next consecutive run of the shuffled indices."""
    n = len(cases)
    if n_folds < 2 or n < n_folds:
        raise ConversionError(f"a {n_folds}-fold split needs at least {max(n_folds, 2)} training cases, found {n}.")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_folds, n // n_folds)
    sizes[: n % n_folds] += 1
    folds, start = [], 0
    for size in sizes:
        val = set(order[start:start + size].tolist())
        start += size
        folds.append({"train": [c for i, c in enumerate(cases) if i not in val],
                      "val": [c for i, c in enumerate(cases) if i in val]})
    return folds


def repeat_splits(groups: Mapping[str, str], repeats: int, val_fraction: float, seed: int) -> list[dict[str, list[str]]]:
    """``repeats`` random hold-out splits: repeat ``r`` draws ``round(val_fraction * n)`` (at least one) of the
    ``n`` groups as validation with ``np.random.RandomState(seed + r)``. ``groups`` maps case -> group (the
    slices of one scan share a group, so no scan is on both sides)."""
    names = sorted(set(groups.values()))
    if len(names) < 2:
        raise ConversionError(f"a train/validation split needs at least 2 training images (or scans), found {len(names)}.")
    n_val = min(len(names) - 1, max(1, int(round(val_fraction * len(names)))))
    out = []
    for r in range(repeats):
        chosen = {names[i] for i in np.random.RandomState(seed + r).permutation(len(names))[:n_val]}
        out.append({"train": [c for c in sorted(groups) if groups[c] not in chosen],
                    "val": [c for c in sorted(groups) if groups[c] in chosen]})
    return out


class NnunetWriter:
    """Writes the files of an nnU-Net v2 raw data set into ``root`` (a temporary folder) and, at the end,
    ``dataset.json``, ``splits_final.json`` and the ``svseg_prepare.json`` stamp."""

    def __init__(self, root: Path, file_ending: str) -> None:
        self.root = root
        self.ending = file_ending
        self.training: list[str] = []
        self.test: list[str] = []
        self.sources: dict[str, list[str]] = {}
        for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def write_array(self, array: np.ndarray, path: Path, affine: np.ndarray | None = None) -> None:
        """One image or label file in the data set's format (PNG, float32 TIFF or NIfTI)."""
        if self.ending == ".png":
            from PIL import Image

            Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
        elif self.ending == ".tif":
            import tifffile

            tifffile.imwrite(path, np.ascontiguousarray(array))
        else:
            atomic_save_nifti(array, np.eye(4) if affine is None else affine, path)

    def add_case(self, case: str, images: Sequence[np.ndarray], label: np.ndarray | None, test: bool,
                 sources: Sequence[Path], affine: np.ndarray | None = None) -> None:
        """Write one case: ``images`` (one array per channel file) and its class-id ``label`` (None: none)."""
        if case in self.sources:
            raise ConversionError(f"{sources[0]}: case id {case!r} is also the id of {self.sources[case][0]} "
                                  "(two source names map to one case id).")
        self.sources[case] = [str(s) for s in sources]
        tag = "Ts" if test else "Tr"
        for c, image in enumerate(images):
            self.write_array(image, self.root / f"images{tag}" / f"{case}_{c:04d}{self.ending}", affine)
        if label is not None:
            self.write_array(label, self.root / f"labels{tag}" / f"{case}{self.ending}", affine)
        elif not test:
            raise ConversionError(f"{sources[0]}: a training case needs a mask.")
        (self.test if test else self.training).append(case)

    def finish(self, name: str, channel_names: Mapping[str, str], class_names: Sequence[str],
               svseg: Mapping[str, Any], splits: Sequence[Mapping[str, Sequence[str]]], options: Mapping[str, Any],
               extra: Mapping[str, Any] | None = None) -> None:
        """Write ``dataset.json``, ``splits_final.json`` and ``svseg_prepare.json``."""
        if not self.training:
            raise ConversionError(f"{name}: the source holds no training case.")
        if not any((self.root / "labelsTs").iterdir()):
            (self.root / "labelsTs").rmdir()
        if not any((self.root / "imagesTs").iterdir()):
            (self.root / "imagesTs").rmdir()
        doc = {"name": name, "channel_names": dict(channel_names),
               "labels": {n: i for i, n in enumerate(class_names)}, "numTraining": len(self.training),
               "file_ending": self.ending, **dict(extra or {}),
               "svseg": dict(svseg, converter_version=CONVERTER_VERSION)}
        atomic_save_json(doc, self.root / "dataset.json")
        atomic_save_json([{"train": list(f["train"]), "val": list(f["val"])} for f in splits],
                         self.root / "splits_final.json")
        atomic_save_json({"converter": svseg.get("source_layout"), "options": dict(options),
                          "converter_version": CONVERTER_VERSION, "training": self.training, "test": self.test,
                          "sources": self.sources}, self.root / STAMP_NAME)


@contextlib.contextmanager
def nnunet_output(out: Path, overwrite: bool, file_ending: str) -> Iterator[NnunetWriter]:
    """An :class:`NnunetWriter` on the temporary folder of an :class:`~svseg.io.AtomicDirectory` that becomes
    ``out`` (from :func:`~svseg.data.convert.common.output_folder`) when the block succeeds; on an error
    nothing is left."""
    with AtomicDirectory(out, overwrite=overwrite) as tmp:
        yield NnunetWriter(tmp, file_ending)


def filter_cases(found: Mapping[str, Any], cases: Sequence[str] | None, source: Path) -> dict[str, Any]:
    """``found`` restricted to ``cases`` (all when None); an unknown case id is an error."""
    if cases is None:
        return dict(found)
    unknown = sorted(set(cases) - set(found))
    if unknown:
        raise ValueError(f"{source}: cases {unknown[:5]} are not in this source (its case ids look like "
                         f"{sorted(found)[:3]}).")
    return {k: v for k, v in found.items() if k in set(cases)}

