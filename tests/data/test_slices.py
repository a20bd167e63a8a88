"""Tests of SliceDataset and the volume dataset on the tiny demo set (real MNI152 data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.transforms import Compose, RandFlipd, Resized

from svseg.data.datalist import datalist_for, transunet_datalist
from svseg.data.slices import SliceDataset, num_slices, volume_dataset


def test_slices_from_nifti_equal_transunet_npz(demo_tiny):
    nifti = SliceDataset(datalist_for("demo", demo_tiny, "training"))
    npz = SliceDataset(transunet_datalist(demo_tiny)["training"])
    assert len(nifti) == len(npz) > 10
    for idx in (0, len(nifti) // 2, len(nifti) - 1):
        a, b = nifti[idx], npz[idx]
        assert a["image"].shape == (1, 49, 58) and a["label"].shape == (1, 49, 58)
        assert (a["case"], a["slice"]) == (b["case"], b["slice"])
        torch.testing.assert_close(a["image"].as_tensor(), b["image"].as_tensor())
        torch.testing.assert_close(a["label"].as_tensor(), b["label"].as_tensor())


def test_slice_transform_cache_filter_and_loader(demo_tiny):
    items = datalist_for("demo", demo_tiny, "training")
    t = Compose([Resized(["image", "label"], (32, 32), mode=("bilinear", "nearest")), RandFlipd(["image", "label"], 0.5, 0)])
    ds = SliceDataset(items, transform=t, cache_size=1, slice_filter=lambda case, k: k % 2 == 0)
    assert all(k % 2 == 0 for _, k in ds.index)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=True, num_workers=0)))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["label"].shape == (4, 1, 32, 32)
    assert set(torch.unique(batch["label"]).tolist()) <= {0.0, 1.0, 2.0}
    assert ds.cached_volumes == 1
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_slicing_axis_and_counts(demo_tiny):
    items = datalist_for("demo", demo_tiny, "test")
    assert num_slices(items[0]["image"], 2) == 4 and num_slices(items[0]["image"], 0) == 49
    ds = SliceDataset(items[:1], axis=0)
    assert len(ds) == 49 and ds[10]["image"].shape == (1, 58, 4)
    with pytest.raises(ValueError, match="axis"):
        SliceDataset(items, axis=3)


def test_volume_dataset_keeps_metadata(demo_tiny):
    items = datalist_for("demo", demo_tiny, "test")
    vol = volume_dataset(items, "demo")[0]
    assert vol["image"].shape == (1, 49, 58, 4) and vol["label"].shape == (1, 49, 58, 4)
    assert vol["case"] == "demo_ts0"
    assert vol["image"].meta["filename_or_obj"].endswith("demo_ts0.nii.gz")
    np.testing.assert_allclose(vol["image"].meta["pixdim"][1:4], [4.083, 4.070, 4.087], atol=1e-3)
    h5 = volume_dataset(transunet_datalist(demo_tiny)["test"], "demo")[0]
    assert h5["label"].meta["filename_or_obj"].endswith("demo_ts0.npy.h5")
    torch.testing.assert_close(h5["image"].as_tensor(), vol["image"].as_tensor())
    torch.testing.assert_close(h5["image"].affine, vol["image"].affine)


def test_missing_volume_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="gone.nii.gz"):
        SliceDataset([{"image": str(tmp_path / "gone.nii.gz"), "label": str(tmp_path / "gone.nii.gz")}])
