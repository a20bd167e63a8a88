"""Tests of the H5 / NPZ MONAI readers.

Orientation checks use the real MNI152 template (nilearn) through the tiny demo set; the error
cases use small synthetic files written in the TransUNet formats (said where they are).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from monai.transforms import LoadImage, LoadImaged

from svseg.data.readers import H5Reader, NPZReader, split_key


def _nifti(path):
    return LoadImage(image_only=True, reader="NibabelReader")(str(path))


def test_h5_matches_nifti_of_the_same_volume(demo_tiny):
    nii = _nifti(demo_tiny / "imagesTs" / "demo_ts0.nii.gz")
    h5 = demo_tiny / "test_vol_h5" / "demo_ts0.npy.h5"
    for reader in (H5Reader(), "H5Reader", "svseg.data.readers.H5Reader"):
        img = LoadImage(image_only=True, reader=reader)(f"{h5}::image")
        assert img.shape == nii.shape == (49, 58, 4)
        torch.testing.assert_close(img.as_tensor(), nii.as_tensor())
        torch.testing.assert_close(img.affine, nii.affine)
    # LoadImage picks H5Reader by itself for .h5 files
    auto = LoadImage(image_only=True)(f"{h5}::label")
    lab = _nifti(demo_tiny / "labelsTs" / "demo_ts0.nii.gz")
    torch.testing.assert_close(auto.as_tensor(), lab.as_tensor())
    np.testing.assert_allclose(auto.meta["pixdim"][1:4], lab.meta["pixdim"][1:4], rtol=1e-5)


def test_h5_keys_through_loadimaged(demo_tiny):
    h5 = str(demo_tiny / "test_vol_h5" / "demo_ts0.npy.h5")
    d = LoadImaged("image", reader=H5Reader(key="label"), ensure_channel_first=True)({"image": h5})
    assert d["image"].shape == (1, 49, 58, 4) and set(np.unique(d["image"].numpy())) <= {0.0, 1.0, 2.0}
    both = LoadImaged(["image", "label"], reader="H5Reader")({"image": h5 + "::image", "label": h5 + "::label"})
    assert both["image"].max() <= 1.0 and both["label"].max() == 2.0


def test_h5_raw_order_and_affine(demo_tiny):
    h5 = str(demo_tiny / "test_vol_h5" / "demo_ts0.npy.h5")
    raw = LoadImage(image_only=True, reader=H5Reader(transpose=False))(h5)
    mon = LoadImage(image_only=True, reader=H5Reader())(h5)
    assert raw.shape == (4, 58, 49)
    torch.testing.assert_close(raw.as_tensor().permute(2, 1, 0), mon.as_tensor())
    # the same voxel maps to the same world point in both orders
    i, j, k = 10, 20, 3
    world_raw = raw.affine.numpy() @ np.array([k, j, i, 1.0])
    world_mon = mon.affine.numpy() @ np.array([i, j, k, 1.0])
    np.testing.assert_allclose(world_raw, world_mon)


def test_npz_slice_matches_nifti_slice(demo_tiny):
    nii = _nifti(demo_tiny / "imagesTr" / "demo_tr0.nii.gz")
    lab = _nifti(demo_tiny / "labelsTr" / "demo_tr0.nii.gz")
    f = str(demo_tiny / "train_npz" / "demo_tr0_slice007.npz")
    img = LoadImage(image_only=True, reader=NPZReader())(f)
    seg = LoadImage(image_only=True, reader="NPZReader")(f + "::label")
    torch.testing.assert_close(img.as_tensor(), nii.as_tensor()[:, :, 7])
    torch.testing.assert_close(seg.as_tensor(), lab.as_tensor()[:, :, 7])


def test_h5_spacing_attribute_and_no_attributes(tmp_path):
    # synthetic TransUNet-style volume (D, H, W) = (3, 5, 4)
    vol = np.arange(60, dtype=np.float32).reshape(3, 5, 4)
    with h5py.File(tmp_path / "s.npy.h5", "w") as f:
        f["image"] = vol
        f.attrs["spacing"] = [0.7, 0.8, 2.5]
    with h5py.File(tmp_path / "plain.npy.h5", "w") as f:
        f["image"] = vol
        f["label"] = (vol > 30).astype(np.uint8)
    img = LoadImage(image_only=True, reader=H5Reader())(str(tmp_path / "s.npy.h5"))
    assert img.shape == (4, 5, 3)
    assert img[1, 2, 0] == vol[0, 2, 1]
    np.testing.assert_allclose(np.diag(img.affine.numpy())[:3], [0.7, 0.8, 2.5])
    plain = LoadImage(image_only=True, reader=H5Reader())(str(tmp_path / "plain.npy.h5"))
    np.testing.assert_allclose(plain.affine.numpy(), np.eye(4))


@pytest.mark.parametrize("reader", [H5Reader(), "H5Reader"])
def test_h5_errors_name_the_file_and_never_fall_back(tmp_path, reader):
    # synthetic files: a truncated HDF5, one without the requested key, a 4D dataset
    good = tmp_path / "good.npy.h5"
    with h5py.File(good, "w") as f:
        f["image"] = np.zeros((3, 4, 4), np.float32)
        f["weird"] = np.zeros((2, 3, 4, 4), np.float32)
    trunc = tmp_path / "trunc.npy.h5"
    trunc.write_bytes(good.read_bytes()[:300])
    load = LoadImage(image_only=True, reader=reader)
    with pytest.raises(FileNotFoundError, match="missing.npy.h5"):
        load(str(tmp_path / "missing.npy.h5"))
    with pytest.raises(ValueError, match="trunc.npy.h5.*truncated or corrupt"):
        load(str(trunc))
    with pytest.raises(KeyError, match=r"good.npy.h5.*'label' not found.*\['image', 'weird'\]"):
        load(f"{good}::label")
    with pytest.raises(ValueError, match="good.npy.h5.*expected 2D or 3D"):
        load(f"{good}::weird")
    with pytest.raises(ValueError, match="expected 3"):
        LoadImage(image_only=True, reader=H5Reader(ndim=3))(str(_write_2d_h5(tmp_path)))


def _write_2d_h5(tmp_path):
    p = tmp_path / "flat.h5"
    with h5py.File(p, "w") as f:
        f["image"] = np.zeros((8, 8), np.float32)
    return p


def test_npz_errors_never_fall_back_to_numpyreader(tmp_path):
    # synthetic npz slice holding only "image": MONAI's NumpyReader would silently load it for "label"
    f = tmp_path / "case0001_slice000.npz"
    np.savez(f, image=np.ones((6, 5), np.float32))
    with pytest.raises(KeyError, match=r"case0001_slice000.npz.*'label' not found.*\['image'\]"):
        LoadImage(image_only=True, reader=NPZReader())(f"{f}::label")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="bad.npz.*truncated or corrupt"):
        LoadImage(image_only=True, reader=NPZReader())(str(bad))
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        LoadImaged("image", reader="NPZReader")({"image": str(tmp_path / "nope.npz")})


def test_reader_arguments_and_suffixes():
    assert split_key("/a/b.npy.h5::label") == ("/a/b.npy.h5", "label")
    assert split_key("/a/b.nii.gz") == ("/a/b.nii.gz", None)
    assert H5Reader().verify_suffix("x.npy.h5::image") and not H5Reader().verify_suffix("x.nii.gz")
    assert NPZReader().verify_suffix(["a.npz", "b.npz::label"]) and not NPZReader().verify_suffix("a.h5")
    with pytest.raises(ValueError, match="key"):
        H5Reader(key="")
    with pytest.raises(ValueError, match="ndim"):
        NPZReader(ndim=4)


def test_h5_axis_convention_matches_itk_and_simpleitk(demo_tiny):
    """Real MNI152 data: H5 arrays are SimpleITK's (z, y, x) order; H5Reader output equals ITKReader's."""
    import SimpleITK as sitk

    nii = str(demo_tiny / "imagesTs" / "demo_ts1.nii.gz")
    h5 = demo_tiny / "test_vol_h5" / "demo_ts1.npy.h5"
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["image"][()], sitk.GetArrayFromImage(sitk.ReadImage(nii)))
    itk = LoadImage(image_only=True, reader="ITKReader")(nii)
    ours = LoadImage(image_only=True, reader=H5Reader())(str(h5))
    torch.testing.assert_close(ours.as_tensor(), itk.as_tensor())
    torch.testing.assert_close(ours.affine.double(), itk.affine.double())
