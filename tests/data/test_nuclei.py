"""``svseg prepare nuclei``: the REAL DSB2018 nuclei sample of the stardist wheel as an nnU-Net raw folder."""
from __future__ import annotations

import json

import numpy as np
import pytest

from svseg.data import plan_dataset, prepare
from svseg.data.nuclei import prepare_nuclei, stardist_sample_dir
from svseg.io import read_image_2d


@pytest.fixture(scope="module")
def source():
    try:
        return stardist_sample_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))


def test_tiles_split_without_overlap_and_binary_masks(tmp_path, source):
    import tifffile

    root = prepare("nuclei", output=tmp_path / "nuc")
    train = sorted(p.name for p in (root / "imagesTr").glob("*.png"))
    test = sorted(p.name for p in (root / "imagesTs").glob("*.png"))
    assert len(train) == 12 and test == ["tile00_0000.png", "tile05_0000.png", "tile10_0000.png", "tile15_0000.png"]
    assert not set(train) & set(test)
    # every tile is the source's pixels at its place; the masks are the instance masks made binary
    image = tifffile.imread(source / "img2d.tif")
    mask = tifffile.imread(source / "mask2d.tif")
    for k in (3, 10):
        split = "Ts" if k == 10 else "Tr"
        y, x = divmod(k, 4)
        tile = read_image_2d(root / f"images{split}" / f"tile{k:02d}_0000.png")[0]
        lab = read_image_2d(root / f"labels{split}" / f"tile{k:02d}.png", mask=True)[0]
        np.testing.assert_array_equal(tile, image[128 * y:128 * (y + 1), 128 * x:128 * (x + 1)])
        np.testing.assert_array_equal(lab, mask[128 * y:128 * (y + 1), 128 * x:128 * (x + 1)] > 0)
    doc = json.loads((root / "dataset.json").read_text())
    assert doc["labels"] == {"background": 0, "nucleus": 1} and doc["numTraining"] == 12
    plan = plan_dataset(str(root))
    assert plan["spatial_dims"] == 2 and plan["intensity"]["rule"] == "zscore"
    assert len(plan["cases"]["training"]) == 12 and len(plan["cases"]["test"]) == 4


def test_reuse_and_retile(tmp_path, source):
    root = prepare_nuclei(tmp_path / "nuc")
    first = (root / "imagesTr" / "tile01_0000.png").stat().st_mtime_ns
    assert prepare_nuclei(tmp_path / "nuc") == root
    assert (root / "imagesTr" / "tile01_0000.png").stat().st_mtime_ns == first  # reused, not rewritten
    prepare_nuclei(tmp_path / "nuc", tile=256, test_tiles=[3])  # a new tiling leaves no stale tile behind
    assert sorted(p.name for p in (root / "imagesTr").glob("*.png")) == ["tile00_0000.png", "tile01_0000.png",
                                                                         "tile02_0000.png"]
    assert [p.name for p in (root / "imagesTs").glob("*.png")] == ["tile03_0000.png"]


def test_bad_arguments(tmp_path, source):
    with pytest.raises(ValueError, match="divide"):
        prepare_nuclei(tmp_path / "a", tile=100)
    with pytest.raises(ValueError, match="0..15"):
        prepare_nuclei(tmp_path / "b", test_tiles=[16])
    with pytest.raises(FileNotFoundError, match="img2d.tif"):
        prepare_nuclei(tmp_path / "c", source=tmp_path)
