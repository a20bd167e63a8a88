"""The data-set rules that the bundle JSON reads by name (:mod:`svseg.bundle.config`) and bundle discovery."""
from __future__ import annotations

from pathlib import Path

import pytest

import svseg.bundle as sb


def test_class_count_depends_on_the_dataset_name_only():
    assert sb.num_classes("synapse") == 9 and sb.num_classes("acdc") == 4 and sb.num_classes("lits") == 3
    assert sb.num_classes("demo") == 3
    assert sb.class_names("synapse")[0] == "background"
    assert sb.protocol("synapse") == "transunet" and sb.inference_mode("synapse") == "transunet"
    assert sb.protocol("demo") == "standard" and sb.inference_mode("demo") == "resize"
    assert sb.prepared_range("demo") == [0.0, 1.0]
    with pytest.raises(ValueError, match="brats"):
        sb.num_classes("brats")


def test_a_paper_dataset_without_data_root_is_refused_not_replaced_by_the_demo():
    with pytest.raises(ValueError, match="dataset_name 'synapse' needs data_root"):
        sb.datalist("synapse", None, "training")
    with pytest.raises(ValueError, match="split must be one of"):
        sb.datalist("demo", None, "train")


def test_demo_datalist_is_explicit(tmp_path, monkeypatch):
    """``dataset_name demo`` without a root uses the demo data, prepared on first use (real MNI152, tiny)."""
    from svseg.data import prepare_demo

    root = prepare_demo(tmp_path / "demo", tiny=True)
    items = sb.datalist("demo", str(root), "test")
    assert items and all({"image", "label", "case"} <= set(i) for i in items)
    assert sb.datalist("demo", str(root), "validation")  # the demo has a validation split of its own


def test_inference_datalist_reads_a_folder(tmp_path):
    import nibabel as nib
    import numpy as np

    # synthetic volumes: the format matters here, not the content
    for name in ("a.nii.gz", "b.v2.nii"):
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), str(tmp_path / name))
    (tmp_path / "notes.txt").write_text("x")
    items = sb.inference_datalist(str(tmp_path), "demo", None)
    assert [i["case"] for i in items] == ["a", "b.v2"]
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        sb.inference_datalist(str(tmp_path / "missing"), "demo", None)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no image files"):
        sb.inference_datalist(str(empty), "demo", None)


def test_bundle_dir_finds_every_bundle_and_names_the_missing_one():
    for name in ("msa2net", "sa2net", "afma", "svanet", "msga"):
        assert (sb.bundle_dir(name) / "configs" / "train.json").is_file()
    assert set(sb.bundle_names()) >= {"msa2net", "sa2net", "afma", "svanet", "msga"}
    with pytest.raises(FileNotFoundError, match="available bundles: .*msa2net"):
        sb.bundle_dir("unet9000")


def test_bundle_dir_honours_svseg_bundles_dir(tmp_path, monkeypatch):
    (tmp_path / "mynet" / "configs").mkdir(parents=True)
    (tmp_path / "mynet" / "configs" / "train.json").write_text("{}")
    monkeypatch.setenv("SVSEG_BUNDLES_DIR", str(tmp_path))
    assert sb.bundle_dir("mynet") == Path(tmp_path) / "mynet"
    assert sb.bundles_root() == Path(tmp_path)
