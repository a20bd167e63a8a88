"""Tests of the Decathlon-style datalists (:mod:`svseg.data.datalist`) on the tiny demo set and synthetic entries."""

from __future__ import annotations

import json

import pytest
from monai.data import load_decathlon_datalist

from svseg.data import datalist as dl


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


def test_intensity_applied_reads_the_recorded_marker_only(tmp_path):
    """Synthetic folders: the recorded marker decides, never the image values."""
    import json as _json

    from svseg.data import intensity_applied

    cases = {
        "marked": {"svseg": {"dataset": "lits", "prepared": True}},
        "svseg01": {"svseg": {"dataset": "acdc", "intensity": {"rule": "minmax"}}},
        "svseg01_demo": {"svseg": {"dataset": "demo", "parameters": {"intensity": {"rule": "minmax"}}}},
        "foreign": {"name": "someone else's Decathlon set", "training": []},
        "false_flag": {"svseg": {"dataset": "lits", "prepared": "yes"}},
    }
    for name, doc in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "dataset.json").write_text(_json.dumps(doc))
    (tmp_path / "transunet" / "train_npz").mkdir(parents=True)
    (tmp_path / "raw").mkdir()
    assert {n: intensity_applied(tmp_path / n) for n in [*cases, "transunet", "raw"]} == {
        "marked": True, "svseg01": True, "svseg01_demo": True, "foreign": False, "false_flag": False,
        "transunet": True, "raw": False}
