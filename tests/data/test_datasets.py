"""Tests of the dataset rules, the intensity transforms and the datalist helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, load_decathlon_datalist

from svseg.data import datalist as dl
from svseg.data import datasets as dsets
from svseg.data import transforms as tr


def test_registry_names_and_classes():
    assert dsets.list_datasets() == ["acdc", "demo", "lits", "synapse"]
    syn = dsets.get_dataset("Synapse")
    assert syn.class_names == (
        "background", "aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas", "spleen", "stomach",
    )
    assert syn.num_classes == 9 and syn.protocol == "transunet" and syn.roi_size == (224, 224)
    assert dsets.get_dataset("acdc").class_names == ("background", "RV", "Myo", "LV")
    assert dsets.get_dataset("lits").class_names == ("background", "liver", "tumour")
    assert dsets.get_dataset("demo").class_names == ("background", "grey matter", "white matter")
    assert dsets.get_dataset("lits").protocol == "standard" and dsets.get_dataset("acdc").protocol == "transunet"
    assert {dsets.get_dataset(n).default_network for n in dsets.list_datasets()} == {"MSA2Net", "SA2Net", "AFMA"}
    with pytest.raises(ValueError, match="unknown dataset name 'kits'.*acdc, demo, lits, synapse"):
        dsets.get_dataset("kits")
    with pytest.raises(ValueError, match="split must be one of"):
        syn.split("val")
    json.dumps(syn.to_dict())  # serialisable


def test_btcv_mapping_keeps_the_organ_names():
    syn = dsets.get_dataset("synapse")
    assert sorted(dsets.SYNAPSE_BTCV_TO_TRANSUNET.values()) == list(range(1, 9))
    for src, dst in dsets.SYNAPSE_BTCV_TO_TRANSUNET.items():
        assert dsets.BTCV_LABELS[src] == syn.class_names[dst]


def test_published_splits():
    syn = dsets.get_dataset("synapse")
    assert len(syn.split("training")) == 18 and len(syn.split("test")) == 12 and syn.split("validation") == ()
    assert syn.split("test")[:5] == ("case0001", "case0002", "case0003", "case0004", "case0008")
    assert "case0040" in syn.split("training") and not set(syn.split("training")) & set(syn.split("test"))
    acdc = dsets.get_dataset("acdc")
    tr_, va, te = (set(acdc.split(s)) for s in ("training", "validation", "test"))
    assert (len(tr_), len(va), len(te)) == (70, 10, 20)
    assert tr_ | va | te == {f"patient{i:03d}" for i in range(1, 101)} and not (tr_ & va or tr_ & te or va & te)
    assert {"patient002", "patient095"} <= te and {"patient019", "patient080"} <= va and "patient001" in tr_
    lits = dsets.get_dataset("lits")
    sizes = [len(lits.split(s)) for s in ("training", "validation", "test")]
    assert sizes == [104, 14, 13] and sum(sizes) == 131


def test_kfold_split():
    cases = [f"volume-{i}" for i in range(10)]
    folds = [dsets.kfold_split(cases, 5, f) for f in range(5)]
    vals = [set(f["validation"]) for f in folds]
    assert set().union(*vals) == set(cases) and all(len(v) == 2 for v in vals)
    assert all(not set(f["training"]) & set(f["validation"]) for f in folds)
    assert folds[0]["validation"] == ("volume-0", "volume-5")  # natural order
    with pytest.raises(ValueError, match="fold"):
        dsets.kfold_split(cases, 5, 5)


def test_register_dataset_validation():
    spec = dsets.get_dataset("demo")
    with pytest.raises(ValueError, match="already registered"):
        dsets.register_dataset(spec)
    import dataclasses

    with pytest.raises(ValueError, match="background"):
        dsets.register_dataset(dataclasses.replace(spec, name="x_bad", class_names=("gm", "wm")))


def test_numpy_intensity_rules():
    hu = np.array([-1000.0, -125.0, 75.0, 275.0, 3000.0])
    np.testing.assert_allclose(tr.ct_window(hu, -125, 275), [0.0, 0.0, 0.5, 1.0, 1.0])
    x = np.arange(101, dtype=np.float32)
    out = tr.percentile_minmax(x, 10, 90)
    assert out[0] == 0 and out[-1] == 1 and out[50] == pytest.approx(0.5)
    z = tr.zscore(np.array([1.0, 2.0, 3.0, 0.0]), nonzero=True)
    assert z[3] == 0 and z[:3].mean() == pytest.approx(0.0, abs=1e-6)
    assert np.all(tr.percentile_minmax(np.full((3, 3), 7.0)) == 0)
    with pytest.raises(ValueError, match="a_max"):
        tr.ct_window(hu, 10, 10)
    with pytest.raises(ValueError, match="unknown intensity rule"):
        tr.apply_intensity(hu, {"rule": "gamma"})


@pytest.mark.parametrize("name", ["synapse", "lits", "acdc", "demo"])
def test_intensity_transform_per_dataset(name):
    spec = dsets.get_dataset(name)
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 300, size=(1, 8, 8, 4)).astype(np.float32) if spec.modality == "CT" else rng.gamma(2, 50, (1, 8, 8, 4)).astype(np.float32)
    img = MetaTensor(torch.as_tensor(raw), affine=torch.diag(torch.tensor([0.8, 0.8, 3.0, 1.0], dtype=torch.float64)))
    out = tr.intensity_transform(spec, prepared=False)({"image": img})["image"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    torch.testing.assert_close(out.affine, img.affine)
    np.testing.assert_allclose(out.numpy(), tr.apply_intensity(raw[0], spec.intensity)[None], atol=1e-5)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    same = tr.intensity_transform(name)({"image": img})["image"]  # prepared data: cast only
    torch.testing.assert_close(same.as_tensor(), img.as_tensor())


def test_write_and_read_datalist_round_trip(tmp_path):
    (tmp_path / "imagesTr").mkdir()
    entries = {
        "training": [{"image": str(tmp_path / "imagesTr" / "a.nii.gz"), "label": str(tmp_path / "labelsTr" / "a.nii.gz"), "case": "a"}],
        "test": [{"image": str(tmp_path / "test_vol_h5" / "b.npy.h5") + "::image", "label": str(tmp_path / "test_vol_h5" / "b.npy.h5") + "::label", "case": "b"}],
    }
    path = dl.write_datalist(tmp_path / "dataset.json", entries, labels=("background", "x"), name="t")
    raw = json.loads(path.read_text())
    assert raw["training"][0]["image"] == "./imagesTr/a.nii.gz" and raw["labels"] == {"0": "background", "1": "x"}
    assert raw["test"][0]["label"] == "./test_vol_h5/b.npy.h5::label" and raw["validation"] == []
    back = dl.read_datalist(path, "test")
    assert back == entries["test"]
    assert dl.read_datalist(path, "training") == entries["training"]
    # MONAI reads the same file
    monai_items = load_decathlon_datalist(str(path), True, "training")
    assert monai_items[0]["image"] == entries["training"][0]["image"]
    with pytest.raises(FileNotFoundError, match="a.nii.gz"):
        dl.read_datalist(path, "training", check_files=True)
    with pytest.raises(ValueError, match="split must be one of"):
        dl.read_datalist(path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        dl.write_datalist(tmp_path / "x.json", {"train": []})


def test_datalist_for_demo_and_errors(demo_tiny, tmp_path):
    items = dl.datalist_for("demo", demo_tiny, "test")
    assert [i["case"] for i in items] == ["demo_ts0", "demo_ts1"]
    assert all(i["image"].startswith(str(demo_tiny)) for i in items)
    # a TransUNet folder without dataset.json
    tu = tmp_path / "tu"
    tu.mkdir()
    for sub in ("train_npz", "test_vol_h5", "lists"):
        (tu / sub).symlink_to(demo_tiny / sub)
    train = dl.datalist_for("synapse", tu, "training")
    assert len(train) == len((demo_tiny / "lists" / "train.txt").read_text().split())
    assert train[0]["image"].endswith("demo_tr0_slice000.npz::image") and train[0]["slice"] == 0
    test = dl.datalist_for("synapse", tu, "test")
    assert [t["case"] for t in test] == ["demo_ts0", "demo_ts1"] and test[0]["label"].endswith(".npy.h5::label")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dl.datalist_for("synapse", tmp_path / "nothing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no dataset.json"):
        dl.datalist_for("lits", empty)


def test_datalist_for_without_root_prepares_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("SVSEG_DATA_DIR", str(tmp_path))
    items = dl.datalist_for("synapse", None, "validation")
    assert [i["case"] for i in items] == ["demo_val0"]
    assert (tmp_path / "demo" / "dataset.json").is_file()
    spec, root = dl.resolve_dataset("synapse", None)
    assert spec.name == "demo" and root == tmp_path / "demo"


def test_datalist_refuses_another_datasets_folder(demo_tiny):
    with pytest.raises(ValueError, match="holds the 'demo' data set, not 'synapse'"):
        dl.datalist_for("synapse", demo_tiny, "training")
    assert dl.datalist_for(None, demo_tiny / "dataset.json", "validation")[0]["case"] == "demo_val0"


def test_docs_list_the_same_splits():
    """docs/datasets.md and svseg.data.datasets name the same published case lists."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()
    acdc = dsets.get_dataset("acdc")
    for split, label in (("test", "test"), ("validation", "validation")):
        line = re.search(rf"\* {label}: ([0-9 ]+)\n", doc).group(1).split()
        assert tuple(f"patient{n}" for n in line) == acdc.split(split)
    syn = dsets.get_dataset("synapse")
    train = re.search(r"training `case(\d{4})((?: \d{4}|\s+\d{4})+)`", doc)
    ids = [train.group(1), *train.group(2).split()]
    assert tuple(f"case{i}" for i in ids) == syn.split("training")
    test = re.search(r"test `case(\d{4})((?: \d{4})+)`", doc)
    assert tuple(f"case{i}" for i in [test.group(1), *test.group(2).split()]) == syn.split("test")
