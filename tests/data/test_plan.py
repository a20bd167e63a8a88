"""`svseg plan`: the measured fingerprint, the rules it writes, reuse and re-planning.

Synthetic layouts (tests/data/own_layouts.py) for the rules; the real stardist DSB2018 nuclei for the
object-size table.
"""
from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from svseg.bundle import config as sb
from svseg.data import dataset_spec, plan_datalist, plan_dataset
from svseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, apply_intensity_channels
from tests.data.own_layouts import write_image_folder, write_nnunet_3d, write_nuclei


def test_plan_of_an_nnunet_set(tmp_path):
    ds = write_nnunet_3d(tmp_path, n_cases=5, n_test=1, use_nnunetv2=False)
    plan = plan_dataset(ds)
    assert json.loads((ds / "plan.json").read_text()) == plan
    assert plan["class_names"] == ["background", "core", "rim"]
    assert plan["spatial_dims"] == 3 and plan["in_channels"] == 1
    assert plan["intensity"] == {"rule": "zscore"}  # MR: per-image z-score
    assert plan["spacing"]["median"] == pytest.approx([0.9, 0.9, 2.5])
    assert plan["median_shape"] == [40.0, 36.0, 8.0]
    assert plan["slice_axis"] == 2
    # 40 x 36 in-plane: the flexible networks run at 64, MSA2Net keeps its 224
    assert plan["roi_size"] == {"svanet": [64, 64], "msa2net": [224, 224], "afma": [64, 64], "sa2net": [64, 64],
                                "msga": [64, 64]}
    freq = plan["class_frequencies"]
    assert freq["core"]["cases"] == 5 and freq["rim"]["cases"] == 5
    assert freq["rim"]["voxel_share"] == pytest.approx(10 * 12 * 4 / (40 * 36 * 8))
    # 5 folds, every case validated exactly once
    assert len(plan["folds"]) == 5
    validated = sorted(c for f in plan["folds"] for c in f["validation"])
    assert validated == [f"blob_{i:03d}" for i in range(5)]
    for f in plan["folds"]:
        assert not set(f["training"]) & set(f["validation"])
    assert [i["case"] for i in plan_datalist(ds, "test")] == ["blob_005"]
    assert len(plan_datalist(ds, "training", "all")) == 5


def test_split_is_seeded_and_the_declared_one_wins(tmp_path):
    a = plan_dataset(write_nnunet_3d(tmp_path / "a", n_cases=6, n_test=0, use_nnunetv2=False))["folds"]
    b = plan_dataset(write_nnunet_3d(tmp_path / "b", n_cases=6, n_test=0, use_nnunetv2=False))["folds"]
    c = plan_dataset(write_nnunet_3d(tmp_path / "c", n_cases=6, n_test=0, use_nnunetv2=False), seed=7)["folds"]
    assert a == b and a != c
    ds = write_nnunet_3d(tmp_path / "d", n_cases=4, n_test=0, use_nnunetv2=False)
    (ds / "splits_final.json").write_text(json.dumps([{"train": ["blob_000", "blob_001"], "val": ["blob_002", "blob_003"]}]))
    plan = plan_dataset(ds)
    assert plan["folds"] == [{"training": ["blob_000", "blob_001"], "validation": ["blob_002", "blob_003"]}]
    assert plan["split_source"] == "declared by the data set"


def test_second_run_reuses_the_plan_unless_the_data_changed(tmp_path):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, use_nnunetv2=False)
    first = plan_dataset(ds)
    stamp = (ds / "plan.json").stat().st_mtime_ns
    assert plan_dataset(ds) == first
    assert (ds / "plan.json").stat().st_mtime_ns == stamp  # not rewritten
    img = nib.load(ds / "imagesTr" / "blob_001_0000.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) * 3.0, img.affine), ds / "imagesTr" / "blob_001_0000.nii.gz")
    os.utime(ds / "imagesTr" / "blob_001_0000.nii.gz", ns=(stamp + 10**9, stamp + 10**9))
    second = plan_dataset(ds)
    assert second["fingerprint"] != first["fingerprint"]
    assert second["intensity_stats"][0]["p99_5"] > first["intensity_stats"][0]["p99_5"]


def test_ct_rule_uses_the_foreground_percentiles(tmp_path):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, modality="CT", use_nnunetv2=False)
    plan = plan_dataset(ds)
    rule, stats = plan["intensity"], plan["intensity_stats"][0]
    assert rule["rule"] == "ct_zscore"
    assert (rule["lower"], rule["upper"]) == (stats["p00_5"], stats["p99_5"])
    # foreground of the synthetic blobs: 160 (label 1) and 220 (label 2) +- 15; the background (100 +- 15) would
    # pull the 0.5 percentile below 70: the statistics are of the foreground only
    assert 160 < stats["mean"] < 220 and stats["p00_5"] > 110
    fg = np.asarray(nib.load(ds / "imagesTr" / "blob_000_0000.nii.gz").dataobj)[None]
    out = apply_intensity_channels(fg, rule)
    assert out.max() == pytest.approx((rule["upper"] - rule["mean"]) / rule["std"], rel=1e-5)


def test_rgb_images_get_imagenet_statistics(tmp_path):
    root = write_image_folder(tmp_path, rgb=True)
    plan = plan_dataset(root)
    assert plan["in_channels"] == 3 and plan["spatial_dims"] == 2
    assert plan["intensity"] == {"rule": "rgb_imagenet", "max_value": 255.0}
    white = np.full((3, 2, 2), 255.0)
    out = apply_intensity_channels(white, plan["intensity"])
    assert out[:, 0, 0] == pytest.approx([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    spec = dataset_spec(root)
    assert sb.in_channels(str(root)) == 3 and spec.spatial_dims == 2
    assert sb.input_mean(str(root), 0.449) == 0.0 and sb.input_std(str(root), 0.226) == 1.0
    # named data sets keep the bundle's paper normalisation
    assert sb.input_mean("synapse", 0.5) == 0.5


def test_object_sizes_of_the_real_nuclei(tmp_path):
    """The DSB2018 nuclei (real): 141 nuclei pieces in 16 tiles, almost all below 5 % of a 128 x 128 tile."""
    root = write_nuclei(tmp_path)
    plan = plan_dataset(root)
    table = plan["object_sizes"]
    assert table["bins"] == ["[0,0.5)%", "[0.5,1)%", "[1,2)%", "[2,3)%", "[3,5)%", "[5,10)%", "[10,100]%"]
    nuclei = table["nucleus"]
    assert sum(nuclei["per_bin"]) == nuclei["objects"] == 141
    assert sum(nuclei["per_bin"][:5]) / nuclei["objects"] > 0.9
    assert plan["roi_size"]["svanet"] == [128, 128]
    assert plan["class_frequencies"]["nucleus"]["cases"] == 16


def test_named_and_folder_data_sets_side_by_side(tmp_path):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, use_nnunetv2=False)
    assert sb.class_names(str(ds)) == ["background", "core", "rim"]
    assert sb.class_names("synapse")[1] == "aorta"
    assert sb.roi_size("synapse", "svanet", [512, 512]) == [512, 512]
    assert sb.roi_size(str(ds), "svanet", [512, 512]) == [64, 64]
    with pytest.raises(ValueError, match="data_root .* is for the named data sets only"):
        sb.datalist(str(ds), str(tmp_path), "training")
    with pytest.raises(ValueError, match="fold must be in 0..2 or 'all'"):
        sb.datalist(str(ds), None, "training", 3)
    with pytest.raises(ValueError, match="unknown dataset name 'nosuchset'.*Or give a data set folder"):
        sb.class_names("nosuchset")
