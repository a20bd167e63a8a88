"""Tests of the demo data set built from the real MNI152 template that ships inside nilearn."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from data_prep.demo import main as demo_main
from svseg.data import demo
from svseg.data.specs import get_dataset


@pytest.fixture
def tiny_root(demo_tiny):
    return demo_tiny


def _load(path):
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def test_mni152_maps_share_the_t1_grid():
    t1, gm, wm, affine = demo.load_mni152_volumes()
    assert t1.shape == gm.shape == wm.shape == (197, 233, 189)
    np.testing.assert_allclose(np.sqrt((affine[:3, :3] ** 2).sum(0)), [1.0, 1.0, 1.0])
    assert 0.0 <= gm.min() and gm.max() <= 1.0 and wm.max() <= 1.0


def test_tiny_layout_and_decathlon_datalist(tiny_root):
    from monai.data import load_decathlon_datalist

    for name in ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "train_npz", "test_vol_h5", "lists"):
        assert (tiny_root / name).is_dir(), name
    counts = {}
    for split in ("training", "validation", "test"):
        items = load_decathlon_datalist(str(tiny_root / "dataset.json"), True, split)
        counts[split] = len(items)
        for item in items:
            image, aff_i = _load(item["image"])
            label, aff_l = _load(item["label"])
            assert image.shape == label.shape and image.shape[:2] == (49, 58)
            np.testing.assert_allclose(aff_i, aff_l)
            assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
            assert set(np.unique(label)) <= {0, 1, 2}
    assert counts == {"training": 4, "validation": 1, "test": 2}
    _cases_match_spec(json.loads((tiny_root / "dataset.json").read_text()))
    assert json.loads((tiny_root / "dataset.json").read_text())["labels"] == {
        "0": "background",
        "1": "grey matter",
        "2": "white matter",
    }


def test_tiny_transunet_views_equal_the_nifti(tiny_root):
    meta = json.loads((tiny_root / "dataset.json").read_text())
    train_names = (tiny_root / "lists" / "train.txt").read_text().split()
    n_train_slices = sum(_load(tiny_root / it["label"])[0].shape[2] for it in meta["training"])
    assert len(train_names) == n_train_slices == len(list((tiny_root / "train_npz").glob("*.npz")))
    # every npz slice is the NIfTI slice transposed (y, x)
    for item in meta["training"]:
        image, _ = _load(tiny_root / item["image"])
        label, _ = _load(tiny_root / item["label"])
        for k in range(image.shape[2]):
            with np.load(tiny_root / "train_npz" / f"{item['case']}_slice{k:03d}.npz") as z:
                assert z["image"].dtype == np.float32 and z["label"].dtype == np.float32
                np.testing.assert_array_equal(z["image"], image[:, :, k].T)
                np.testing.assert_array_equal(z["label"], label[:, :, k].T)
    assert (tiny_root / "lists" / "test_vol.txt").read_text().split() == ["demo_ts0", "demo_ts1"]
    for item in meta["test"] + meta["validation"]:
        image, affine = _load(tiny_root / item["image"])
        label, _ = _load(tiny_root / item["label"])
        with h5py.File(tiny_root / "test_vol_h5" / f"{item['case']}.npy.h5", "r") as f:
            np.testing.assert_array_equal(f["image"][()], image.transpose(2, 1, 0))
            np.testing.assert_array_equal(f["label"][()], label.transpose(2, 1, 0))
            np.testing.assert_allclose(f.attrs["affine"], affine)


def test_held_out_slabs_never_touch_training(tiny_root):
    meta = json.loads((tiny_root / "dataset.json").read_text())
    params = meta["svseg"]["parameters"]
    slabs = meta["svseg"]["slabs"]
    train_z = {z for c, (a, b) in slabs.items() if c.startswith("demo_tr") for z in range(a, b)}
    for case, (a, b) in slabs.items():
        if case.startswith("demo_tr"):
            continue
        near = set(range(a - params["gap"], b + params["gap"]))
        assert not (near & train_z), case
        # the held-out slab holds both tissue classes
        label, affine = _load(tiny_root / ("labelsTs" if "ts" in case else "labelsTr") / f"{case}.nii.gz")
        assert {1, 2} <= set(np.unique(label))
    # world coordinates of a slab's first slice agree with the full volume's grid
    _, full_label, full_affine = demo.make_demo_volume(tiny=True)
    a = slabs["demo_ts0"][0]
    _, affine = _load(tiny_root / "labelsTs" / "demo_ts0.nii.gz")
    np.testing.assert_allclose(affine @ [0, 0, 0, 1], full_affine @ [0, 0, a, 1])


def test_prepare_is_idempotent_and_force_rebuilds(tiny_root):
    stamp = tiny_root / demo.STAMP_NAME
    before = stamp.stat().st_mtime_ns
    assert demo.prepare_demo(tiny_root, tiny=True) == tiny_root
    assert stamp.stat().st_mtime_ns == before
    assert demo.is_prepared(tiny_root, tiny=True)
    assert not demo.is_prepared(tiny_root, tiny=False)  # different parameters


def test_force_rebuild_and_foreign_folder(tmp_path):
    root = demo.prepare_demo(tmp_path / "d", tiny=True)
    (root / "junk.txt").write_text("x")
    demo.prepare_demo(root, tiny=True, force=True)
    assert not (root / "junk.txt").exists() and demo.is_prepared(root, tiny=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="foreign"):
        demo.prepare_demo(foreign, tiny=True)
    assert (foreign / "mine.txt").read_text() == "keep"


def test_default_location_uses_svseg_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SVSEG_DATA_DIR", str(tmp_path))
    assert demo.default_demo_dir() == tmp_path / "demo"
    assert demo.default_demo_dir(tiny=True) == tmp_path / "demo_tiny"


def test_full_demo_via_command(tmp_path):
    assert demo_main(["--output", str(tmp_path / "demo")]) == 0
    meta = json.loads((tmp_path / "demo" / "dataset.json").read_text())
    image, _ = _load(tmp_path / "demo" / meta["test"][0]["image"])
    assert image.shape == (197, 233, 16)
    assert len(meta["training"]) >= 2 and len(meta["validation"]) == 1 and len(meta["test"]) == 2
    _cases_match_spec(meta)


def _cases_match_spec(meta):
    spec = get_dataset("demo")
    for split in ("training", "validation", "test"):
        assert tuple(e["case"] for e in meta[split]) == spec.split(split)
