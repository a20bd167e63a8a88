"""Tests of the dataset rules (:mod:`svseg.data.specs`): names, classes, published splits, k-fold."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from svseg.data import specs


def test_registry_names_and_classes():
    assert specs.list_datasets() == ["acdc", "demo", "lits", "synapse"]
    syn = specs.get_dataset("Synapse")
    assert syn.class_names == (
        "background", "aorta", "gallbladder", "left kidney", "right kidney", "liver", "pancreas", "spleen", "stomach",
    )
    assert syn.num_classes == 9 and syn.protocol == "transunet" and syn.roi_size == (224, 224)
    assert specs.get_dataset("acdc").class_names == ("background", "RV", "Myo", "LV")
    assert specs.get_dataset("lits").class_names == ("background", "liver", "tumour")
    assert specs.get_dataset("demo").class_names == ("background", "grey matter", "white matter")
    assert specs.get_dataset("lits").protocol == "standard" and specs.get_dataset("acdc").protocol == "transunet"
    assert {specs.get_dataset(n).default_network for n in specs.list_datasets()} == {"MSA2Net", "SA2Net", "AFMA"}
    with pytest.raises(ValueError, match="unknown dataset name 'kits'.*acdc, demo, lits, synapse"):
        specs.get_dataset("kits")
    with pytest.raises(ValueError, match="split must be one of"):
        syn.split("val")
    json.dumps(syn.to_dict())  # serialisable


def test_btcv_mapping_keeps_the_organ_names():
    syn = specs.get_dataset("synapse")
    assert sorted(specs.SYNAPSE_BTCV_TO_TRANSUNET.values()) == list(range(1, 9))
    for src, dst in specs.SYNAPSE_BTCV_TO_TRANSUNET.items():
        assert specs.BTCV_LABELS[src] == syn.class_names[dst]


def test_published_splits():
    syn = specs.get_dataset("synapse")
    assert len(syn.split("training")) == 18 and len(syn.split("test")) == 12 and syn.split("validation") == ()
    assert syn.split("test")[:5] == ("case0001", "case0002", "case0003", "case0004", "case0008")
    assert "case0040" in syn.split("training") and not set(syn.split("training")) & set(syn.split("test"))
    acdc = specs.get_dataset("acdc")
    tr_, va, te = (set(acdc.split(s)) for s in ("training", "validation", "test"))
    assert (len(tr_), len(va), len(te)) == (70, 10, 20)
    assert tr_ | va | te == {f"patient{i:03d}" for i in range(1, 101)} and not (tr_ & va or tr_ & te or va & te)
    assert {"patient002", "patient095"} <= te and {"patient019", "patient080"} <= va and "patient001" in tr_
    lits = specs.get_dataset("lits")
    sizes = [len(lits.split(s)) for s in ("training", "validation", "test")]
    assert sizes == [104, 14, 13] and sum(sizes) == 131


def test_kfold_split():
    cases = [f"volume-{i}" for i in range(10)]
    folds = [specs.kfold_split(cases, 5, f) for f in range(5)]
    vals = [set(f["validation"]) for f in folds]
    assert set().union(*vals) == set(cases) and all(len(v) == 2 for v in vals)
    assert all(not set(f["training"]) & set(f["validation"]) for f in folds)
    assert folds[0]["validation"] == ("volume-0", "volume-5")  # natural order
    with pytest.raises(ValueError, match="fold"):
        specs.kfold_split(cases, 5, 5)


def test_register_dataset_validation():
    spec = specs.get_dataset("demo")
    with pytest.raises(ValueError, match="already registered"):
        specs.register_dataset(spec)
    with pytest.raises(ValueError, match="background"):
        specs.register_dataset(dataclasses.replace(spec, name="x_bad", class_names=("gm", "wm")))


def test_docs_list_the_same_splits():
    """docs/datasets.md and svseg.data.specs name the same published case lists."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()
    acdc = specs.get_dataset("acdc")
    for split, label in (("test", "test"), ("validation", "validation")):
        line = re.search(rf"\* {label}: ([0-9 ]+)\n", doc).group(1).split()
        assert tuple(f"patient{n}" for n in line) == acdc.split(split)
    syn = specs.get_dataset("synapse")
    train = re.search(r"training `case(\d{4})((?: \d{4}|\s+\d{4})+)`", doc)
    ids = [train.group(1), *train.group(2).split()]
    assert tuple(f"case{i}" for i in ids) == syn.split("training")
    test = re.search(r"test `case(\d{4})((?: \d{4})+)`", doc)
    assert tuple(f"case{i}" for i in [test.group(1), *test.group(2).split()]) == syn.split("test")
