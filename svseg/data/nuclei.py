"""Real small objects that ship inside a package: the DSB2018 nuclei sample of the ``stardist`` wheel.

Source: ``stardist/data/images/img2d.tif`` (a 512 x 512 fluorescence microscopy crop of the 2018 Data
Science Bowl, stage 1, 8-bit values stored as uint16) and ``mask2d.tif`` (its instance masks, 0 =
background, 1..N = one id per nucleus), as the ``stardist`` wheel ships them (``pip install --no-deps
stardist``; svseg never imports stardist, it only reads the two files). The DSB2018 data are released
under CC0 by the Broad Institute (BBBC038).

:func:`prepare_nuclei` writes them as an **nnU-Net v2 raw** data set of 2D PNG tiles, so that ``svseg
plan`` reads it like any user's folder:

* the image is cut into non-overlapping ``tile`` x ``tile`` tiles (default 128: 16 tiles), numbered row by
  row (``tile00`` top left);
* the test tiles (default the four on the diagonal, ``tile00``, ``tile05``, ``tile10``, ``tile15``, one in
  every row and column) go to ``imagesTs/`` + ``labelsTs/``, the others to ``imagesTr/`` + ``labelsTr/``;
  no pixel is in both;
* masks are binary (``nucleus`` = 1 where the instance id is > 0); ``dataset.json`` names the channel
  ``microscopy`` (svseg's per-image z-score rule) and the classes ``background``, ``nucleus``.

Used by the model card (``benchmarks/model_card.py``) and the learning-floor tests; ``svseg prepare
nuclei --output DIR`` writes it for a user who wants a second real data set to try.
"""
from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from svseg.data.demo import default_data_dir
from svseg.io import atomic_save_json, atomic_save_png

__all__ = ["NUCLEI_DATASET", "nuclei_tiles", "prepare_nuclei", "read_nuclei_sample", "stardist_sample_dir"]

NUCLEI_DATASET = "Dataset901_DSB2018Nuclei"
_DEFAULT_TEST = (0, 5, 10, 15)


def stardist_sample_dir() -> Path:
    """``stardist/data/images`` of the installed ``stardist`` wheel.

    Raises:
        FileNotFoundError: stardist is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the DSB2018 nuclei sample ships inside the stardist wheel, which is not installed: "
                                "pip install --no-deps stardist (or pass --source with img2d.tif and mask2d.tif)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "images"


def _read_pair(source: Path) -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    files = [source / "img2d.tif", source / "mask2d.tif"]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: missing (the nuclei sample needs img2d.tif and mask2d.tif)")
    image, mask = (np.asarray(tifffile.imread(str(f))) for f in files)
    if image.ndim != 2 or mask.shape != image.shape:
        raise ValueError(f"{files[0]}: expected a 2D image with a mask of the same shape, got {image.shape} and "
                         f"{mask.shape}")
    if image.min() < 0 or image.max() > 255:
        raise ValueError(f"{files[0]}: values {image.min()}..{image.max()} do not fit 8 bits")
    return image.astype(np.uint8), mask


def nuclei_tiles(image: np.ndarray, mask: np.ndarray, tile: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(k, image tile, binary mask tile)`` for the non-overlapping ``tile`` x ``tile`` tiles, row by row
    (``k`` = 0 top left); the mask is ``instance id > 0``. Partial tiles at the right and bottom edges are left out."""
    k = 0
    for y in range(0, image.shape[0] - tile + 1, tile):
        for x in range(0, image.shape[1] - tile + 1, tile):
            yield k, image[y:y + tile, x:x + tile], mask[y:y + tile, x:x + tile] > 0
            k += 1


def read_nuclei_sample(source: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The nuclei sample as ``(uint8 image, instance mask)``, from ``source`` or the installed stardist wheel."""
    return _read_pair(Path(source) if source is not None else stardist_sample_dir())


def prepare_nuclei(output: str | os.PathLike | None = None, tile: int = 128,
                   test_tiles: Sequence[int] = _DEFAULT_TEST, source: str | os.PathLike | None = None,
                   force: bool = False) -> Path:
    """Write the nuclei sample as an nnU-Net v2 raw folder of PNG tiles and return the folder.

    Args:
        output: the data set folder (default ``$SVSEG_DATA_DIR/Dataset901_DSB2018Nuclei``). A folder that
            already holds this data set with the same parameters is reused.
        tile: tile side in pixels; the image side must be a multiple of it.
        test_tiles: tile numbers (row by row) held out as ``imagesTs``/``labelsTs``.
        source: a folder holding ``img2d.tif`` and ``mask2d.tif`` (default: the installed stardist wheel's).
        force: rewrite even when the folder is up to date.

    Raises:
        FileNotFoundError: no stardist wheel and no ``source``.
        ValueError: a tile size that does not divide the image, or test tiles out of range.
    """
    root = Path(output).expanduser() if output is not None else default_data_dir() / NUCLEI_DATASET
    params = {"tile": int(tile), "test_tiles": sorted(int(t) for t in test_tiles), "version": 1}
    stamp = root / "svseg_nuclei_stamp.json"
    if not force and stamp.is_file() and (root / "dataset.json").is_file():
        try:
            if json.loads(stamp.read_text()) == params:
                return root
        except ValueError:
            pass
    image, mask = read_nuclei_sample(source)
    h, w = image.shape
    if tile < 16 or h % tile or w % tile:
        raise ValueError(f"tile {tile} must be >= 16 and divide the image size {h} x {w}")
    n = (h // tile) * (w // tile)
    if not params["test_tiles"] or min(params["test_tiles"]) < 0 or max(params["test_tiles"]) >= n:
        raise ValueError(f"test_tiles {params['test_tiles']} must be tile numbers in 0..{n - 1}")
    subs = {sub: root / sub for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs")}
    for folder in subs.values():
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("tile*.png"):  # a different tiling must not leave stale tiles behind
            old.unlink()
    for k, image_tile, mask_tile in nuclei_tiles(image, mask, tile):
        test = k in params["test_tiles"]
        images, labels = (subs["imagesTs"], subs["labelsTs"]) if test else (subs["imagesTr"], subs["labelsTr"])
        atomic_save_png(image_tile, images / f"tile{k:02d}_0000.png")
        atomic_save_png(mask_tile.astype(np.uint8), labels / f"tile{k:02d}.png")
    atomic_save_json({
        "name": "DSB2018 nuclei (stardist wheel sample)",
        "description": f"stardist/data/images img2d.tif + mask2d.tif cut into {n} tiles of {tile} x {tile}; "
                       f"test tiles {params['test_tiles']}; masks binary (instance id > 0)",
        "licence": "CC0 (Broad Bioimage Benchmark Collection, BBBC038 / DSB2018)",
        "channel_names": {"0": "microscopy"},
        "labels": {"background": 0, "nucleus": 1},
        "numTraining": n - len(params["test_tiles"]),
        "file_ending": ".png",
    }, root / "dataset.json")
    atomic_save_json(params, stamp)
    return root
