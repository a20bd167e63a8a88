"""The AFMA LiTS slice layout (ShengtianSang/AFMA) -> svseg's nnU-Net v2 raw data set of float32 TIFFs.

The layout (``data/LiTS.py: LiTS_Dataset``; the folder names follow ``main.py``'s ``train/``, ``val/``,
``test/`` with ``trainannot/``, ``valannot/``, ``testannot/``)::

    <root>/{train,val,test}/<...volume...>.npy         one CT slice, (H, W) or channels-last (H, W, C), HU
    <root>/{train,val,test}/<...segmentation...>.npy   its mask: the image name with "volume" -> "segmentation"
    (or the masks in <root>/<split>annot/)

``LiTS_Dataset`` keeps the files whose name contains ``volume``, finds the mask by replacing ``volume`` with
``segmentation`` in the image path (so next to the image), clips the image to [-250, 250] HU as float32
(``normalise``) and moves the channels first (``dimension_swith``: (H, W, C) -> (C, H, W)). Classes:
background 0, liver 1, liver tumour 2 (``CLASSES``).

svseg applies that rule once: each channel becomes a float32 ``<case>_000<c>.tif`` clipped to [-250, 250]
(no rescaling, as AFMA), with ``channel_names`` ``noNorm`` and the rule itself in ``dataset.json``
(``svseg.intensity``: ``ct_window`` to [-250, 250] without rescaling), which the plan uses as it is, so the
bundles clip a raw slice given to ``svseg predict`` the same way; masks become
uint8 ``<case>.tif`` class ids. A raw slice given to ``svseg predict`` later is not clipped by the plan: clip it
the same way first. Refused: a mask value outside {0, 1, 2} or not whole, a mask shape that is not the
image's (H, W), NaN/Inf HU values, a missing mask (training and validation; the test masks are optional, as
the authors' test loader reads none).

Split: ``train`` + ``val`` -> ``imagesTr`` with the one fold in ``splits_final.json`` (AFMA selects the best
epoch on ``val``), ``test`` -> ``imagesTs`` (and ``labelsTs`` when the test masks are there).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from svseg.data.convert.common import ConversionError, output_folder, with_progress
from svseg.data.convert.paper_common import case_id, filter_cases, nnunet_output, require_layout
from svseg.io import PathLike

__all__ = ["LITS_CLASSES", "HU_WINDOW", "convert_afma_lits", "load_slice"]

log = logging.getLogger(__name__)

LITS_CLASSES = ["background", "liver", "tumour"]
#: AFMA's HU clip (data/LiTS.py: normalise)
HU_WINDOW = (-250.0, 250.0)
_SPLITS = ("train", "val", "test")


def load_slice(path: Path) -> np.ndarray:
    """A ``.npy`` slice as an array, errors naming the file."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ConversionError(f"{path}: cannot read the .npy slice (corrupt or truncated?): {e}") from e


def image_channels(path: Path, window: tuple[float, float]) -> list[np.ndarray]:
    """The clipped float32 ``(H, W)`` channel planes of one image slice."""
    arr = load_slice(path)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.number):
        raise ConversionError(f"{path}: expected a numeric (H, W) or channels-last (H, W, C) slice, got "
                              f"{arr.dtype} {tuple(arr.shape)}.")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ConversionError(f"{path}: the slice holds NaN/Inf values.")
    arr = np.clip(arr.astype(np.float32), window[0], window[1])
    return [np.ascontiguousarray(arr[..., c]) for c in range(arr.shape[-1])]


def mask_ids(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A mask slice as uint8 class ids 0..2 of ``shape``; other values or shapes are refused."""
    arr = load_slice(path)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != shape:
        raise ConversionError(f"{path}: mask shape {tuple(arr.shape)} is not the image's (H, W) {shape}.")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise ConversionError(f"{path}: the mask must hold whole class ids 0, 1, 2.")
    values = set(np.unique(arr).tolist())
    bad = sorted(v for v in values if v not in (0, 1, 2))
    if bad:
        raise ConversionError(f"{path}: mask values {bad[:8]} are not LiTS class ids 0 (background), 1 (liver), 2 (tumour).")
    return arr.astype(np.uint8)


def find_mask(image: Path, root: Path, split: str) -> Path | None:
    """The mask of ``image``: the same name with ``volume`` -> ``segmentation``, next to it or in ``<split>annot/``."""
    name = image.name.replace("volume", "segmentation")
    for candidate in (image.parent / name, root / f"{split}annot" / name):
        if candidate.is_file():
            return candidate
    return None


def convert_afma_lits(source: PathLike, output: PathLike | None = None, window: Sequence[float] = HU_WINDOW,
                      overwrite: bool = False, cases: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Convert AFMA's LiTS ``.npy`` slice folders; returns the output folder.

    Args:
        source: the folder holding ``train/``, ``val/`` and ``test/``.
        output: destination (default ``$SVSEG_DATA_DIR/afma_lits``).
        window: the HU clip (AFMA: -250, 250).
        cases: convert only these case ids (the image stems). progress: a progress bar.
    """
    folder = require_layout(source, "afma")
    lo, hi = (float(w) for w in window)
    found: dict[str, tuple[str, Path, Path | None]] = {}
    for split in _SPLITS:
        if not (folder / split).is_dir():
            continue
        for path in sorted(p for p in (folder / split).iterdir() if p.suffix == ".npy" and "volume" in p.name):
            mask = find_mask(path, folder, split)
            if mask is None and split != "test":
                raise FileNotFoundError(f"{path.parent / path.name.replace('volume', 'segmentation')}: mask of {path} not found.")
            cid = case_id(path.stem)
            if cid in found:
                raise ConversionError(f"{path}: case id {cid!r} is also the id of {found[cid][1]}.")
            found[cid] = (split, path, mask)
    test_masks = [c for c, v in found.items() if v[0] == "test" and v[2] is not None]
    if test_masks and len(test_masks) != sum(v[0] == "test" for v in found.values()):
        missing = next(v[1] for v in found.values() if v[0] == "test" and v[2] is None)
        raise FileNotFoundError(f"{missing}: the other test slices have masks, this one has none.")
    chosen = filter_cases(found, cases, folder)
    name = "afma_lits"
    out = output_folder(name, output, overwrite)
    with nnunet_output(out, overwrite, ".tif") as writer:
        n_channels = None
        for cid in with_progress(sorted(chosen), "AFMA LiTS", progress):
            split, image_path, mask_path = chosen[cid]
            planes = image_channels(image_path, (lo, hi))
            if n_channels is not None and len(planes) != n_channels:
                raise ConversionError(f"{image_path}: {len(planes)} channel(s), the other slices have {n_channels}.")
            n_channels = len(planes)
            label = None if mask_path is None else mask_ids(mask_path, planes[0].shape)
            writer.add_case(cid, planes, label, split == "test",
                            [image_path] + ([mask_path] if mask_path is not None else []))
        splits = [{"train": [c for c in writer.training if chosen[c][0] == "train"],
                   "val": [c for c in writer.training if chosen[c][0] == "val"]}]
        text = "AFMA folders: train = train, val = validation (AFMA main.py), test -> imagesTs"
        writer.finish(name, {str(c): "noNorm" for c in range(n_channels or 1)}, LITS_CLASSES,
                      {"source_layout": "afma", "paper": "AFMA (Sang et al., TPAMI 2022), LiTS", "protocol": "afma",
                       "split": text, "intensity_applied": f"HU clipped to [{lo:g}, {hi:g}] (AFMA data/LiTS.py "
                       "normalise), no rescaling",
                       # the same rule for the bundles, so a raw LiTS slice given to svseg predict is clipped too
                       # (clipping is idempotent: the converted slices are unchanged by it)
                       "intensity": {"rule": "ct_window", "a_min": lo, "a_max": hi, "b_min": lo, "b_max": hi}},
                      splits, {"window": [lo, hi]})
        log.info("AFMA LiTS: %d training, %d test slices", len(writer.training), len(writer.test))
    return out
