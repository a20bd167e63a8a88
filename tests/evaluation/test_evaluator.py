"""Reports, folder evaluation, CLI entry and small-object metrics (synthetic NIfTI volumes)."""
from __future__ import annotations

import json
import math
import os
import stat

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from svseg.evaluation import (
    evaluate_case,
    evaluate_folders,
    object_metrics,
    size_bin_labels,
    summarize,
    summarize_objects,
    write_report,
)
from svseg.evaluation.__main__ import main as evaluation_main


def _case(seed, shape=(20, 18, 10)):
    """Synthetic two-class volume: a box (class 1) and a ball (class 2), prediction shifted."""
    rng = np.random.default_rng(seed)
    ref = np.zeros(shape, np.uint8)
    o = rng.integers(2, 5, size=3)
    ref[o[0]:o[0] + 6, o[1]:o[1] + 5, o[2]:o[2] + 4] = 1
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    ref[(zz - 14) ** 2 + (yy - 12) ** 2 + (xx - 6) ** 2 <= 9] = 2
    pred = np.roll(ref, int(rng.integers(0, 2)), axis=0)
    return pred, ref


def _write(path, arr, spacing):
    nib.save(nib.Nifti1Image(arr, np.diag(list(spacing) + [1.0])), str(path))


def test_transunet_summary_is_mean_over_cases_then_classes(tmp_path):
    rows = []
    for i in range(3):
        pred, ref = _case(i)
        if i == 2:
            pred[pred == 2] = 0  # class 2 missed in case 2 -> (0, 0)
        rows += evaluate_case(pred, ref, ["bg", "box", "ball"], protocol="transunet", case=f"c{i}")
    summary = write_report(rows, tmp_path, "transunet")
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert list(df.columns[:4]) == ["case", "class", "dice", "hd95"]
    assert len(df) == 6
    per_class = df.groupby("class")[["dice", "hd95"]].mean()
    assert summary["classes"]["ball"]["dice"] == pytest.approx(per_class.loc["ball", "dice"])
    assert summary["overall"]["dice"] == pytest.approx(per_class["dice"].mean())
    assert summary["overall"]["hd95"] == pytest.approx(per_class["hd95"].mean())
    assert summary["classes"]["ball"]["n_empty_pred"] == 1
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["protocol"] == "transunet" and "voxel" in on_disk["spacing"]
    png = (tmp_path / "boxplot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_standard_summary_counts_empty_reference_and_missed():
    rows = [
        {"case": "a", "class": "x", "dice": 0.8, "hd95": 2.0, "assd": 1.0, "pred_voxels": 5, "ref_voxels": 5},
        {"case": "b", "class": "x", "dice": float("nan"), "hd95": float("nan"), "assd": float("nan"), "pred_voxels": 3, "ref_voxels": 0},
        {"case": "c", "class": "x", "dice": 0.0, "hd95": float("inf"), "assd": float("inf"), "pred_voxels": 0, "ref_voxels": 4},
    ]
    s = summarize(rows, "standard")["classes"]["x"]
    assert s["n_empty_ref"] == 1 and s["n_evaluated"] == 2 and s["n_hd95_inf"] == 1 and s["n_fp_on_empty_ref"] == 1
    assert s["dice"] == pytest.approx(0.4) and s["hd95"] == pytest.approx(2.0)


def test_evaluate_folders_standard_reads_spacing_and_matches_names(tmp_path):
    pred_dir, ref_dir, out = tmp_path / "pred", tmp_path / "ref", tmp_path / "out"
    pred_dir.mkdir()
    ref_dir.mkdir()
    spacing = (0.75, 0.75, 3.0)
    cases = {}
    for i in range(2):
        pred, ref = _case(10 + i)
        cases[f"case{i:02d}"] = (pred, ref)
        _write(ref_dir / f"case{i:02d}.nii.gz", ref, spacing)
        _write(pred_dir / f"case{i:02d}_pred.nii.gz", pred.astype(np.float32), spacing)  # float labels on disk
    summary = evaluate_folders(pred_dir, ref_dir, out, protocol="standard", class_names=["bg", "box", "ball"], progress=False)
    df = pd.read_csv(out / "metrics.csv")
    assert set(df["case"]) == {"case00", "case01"} and set(df["class"]) == {"box", "ball"}
    assert summary["spacing"]["case00"] == list(spacing)
    for _, r in df.iterrows():
        pred, ref = cases[r["case"]]
        lab = {"box": 1, "ball": 2}[r["class"]]
        expected = evaluate_case(pred, ref, ["bg", "box", "ball"], spacing=spacing, case=r["case"])[lab - 1]
        assert r["hd95"] == pytest.approx(expected["hd95"]) and r["dice"] == pytest.approx(expected["dice"])
    assert (out / "boxplot.png").is_file() and (out / "summary.json").is_file()
    # class names default to class_<id>
    s2 = evaluate_folders(pred_dir, ref_dir, tmp_path / "out2", protocol="transunet", plot=False, progress=False)
    assert set(s2["classes"]) == {"class_1", "class_2"} and not (tmp_path / "out2" / "boxplot.png").exists()


def test_module_cli_with_small_objects(tmp_path, capsys):
    pred_dir, ref_dir, out = tmp_path / "pred", tmp_path / "ref", tmp_path / "out"
    pred_dir.mkdir()
    ref_dir.mkdir()
    pred, ref = _case(3)
    _write(ref_dir / "k.nii.gz", ref, (1.0, 1.0, 2.0))
    _write(pred_dir / "k.nii.gz", pred, (1.0, 1.0, 2.0))
    assert evaluation_main(["--pred", str(pred_dir), "--ref", str(ref_dir), "--output", str(out), "--protocol", "transunet", "--small-objects", "--no-plot"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["protocol"] == "transunet" and 0 < printed["overall"]["dice"] <= 1
    so = pd.read_csv(out / "small_objects.csv")
    assert {"object"} <= set(so["kind"]) and (so["size_pct"] > 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["small_objects"]["size_reference"] == "slice" and summary["files"]["small_objects"].endswith("small_objects.csv")


def test_object_metrics_detection_dice_bins_and_false_positives():
    # synthetic 2D image 100x100 (slice area 10000 px): objects of 16 px (0.16 %), 144 px (1.44 %), 900 px (9 %)
    ref = np.zeros((100, 100), np.uint8)
    pred = np.zeros_like(ref)
    ref[5:9, 5:9] = 1  # 16 px, missed
    ref[20:32, 20:32] = 1  # 144 px, half predicted
    pred[20:32, 20:26] = 1
    ref[50:80, 50:80] = 1  # 900 px, predicted exactly
    pred[50:80, 50:80] = 1
    pred[90:92, 90:95] = 1  # 10 px false positive
    rows = object_metrics(pred, ref, ["bg", "lesion"], case="img", size_reference="volume")
    objs = sorted((r for r in rows if r["kind"] == "object"), key=lambda r: r["size_voxels"])
    assert [o["size_voxels"] for o in objs] == [16, 144, 900]
    assert [o["detected"] for o in objs] == [False, True, True]
    assert objs[1]["dice"] == pytest.approx(2 * 72 / (144 + 72)) and objs[2]["dice"] == 1.0
    labels = size_bin_labels()
    assert [o["size_bin"] for o in objs] == [labels[0], labels[2], labels[5]]
    fps = [r for r in rows if r["kind"] == "false_positive"]
    assert len(fps) == 1 and fps[0]["size_voxels"] == 10 and math.isnan(fps[0]["dice"])
    s = summarize_objects(rows)
    assert s["all"]["n_objects"] == 3 and s["all"]["recall"] == pytest.approx(2 / 3)
    assert s["below"]["<0.5%"]["recall"] == 0.0 and s["below"]["<0.5%"]["n_false_positive"] == 1
    assert s["below"]["<2%"]["n_objects"] == 2 and s["below"]["<100%"]["n_objects"] == 3
    # a stricter detection threshold drops the half-predicted object
    strict = object_metrics(pred, ref, ["bg", "lesion"], size_reference="volume", min_overlap=0.6)
    assert sum(r["detected"] is True for r in strict if r["kind"] == "object") == 1


def test_object_metrics_per_slice_of_a_volume():
    ref = np.zeros((10, 10, 4), np.uint8)  # synthetic: a 2x2 square on slices 1 and 2 along axis 2
    ref[2:4, 2:4, 1:3] = 1
    pred = ref.copy()
    pred[:, :, 2] = 0
    rows = object_metrics(pred, ref, ["bg", "x"], size_reference="slice", axis=2)
    objs = [r for r in rows if r["kind"] == "object"]
    assert sorted(o["slice"] for o in objs) == [1, 2]
    assert all(o["size_pct"] == pytest.approx(4.0) for o in objs)
    assert {o["slice"]: o["detected"] for o in objs} == {1: True, 2: False}
    vol = object_metrics(pred, ref, ["bg", "x"], size_reference="volume")
    assert len(vol) == 1 and vol[0]["size_voxels"] == 8 and vol[0]["size_pct"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="size_reference"):
        object_metrics(pred, ref, size_reference="image")


def test_rows_carry_the_spacing_and_the_report_states_it(tmp_path):
    """Standard protocol: each row records its case's spacing; write_report without ``spacing``
    states the per-case spacings really used, and says "voxel units" only when none was given."""
    rows = []
    for i, sp in enumerate([(0.75, 0.75, 3.0), (1.0, 1.0, 2.5)]):
        pred, ref = _case(20 + i)
        rows += evaluate_case(pred, ref, ["bg", "box", "ball"], spacing=sp, case=f"c{i}")
    assert [r["spacing"] for r in rows] == [[0.75, 0.75, 3.0]] * 2 + [[1.0, 1.0, 2.5]] * 2
    summary = write_report(rows, tmp_path / "mm", "standard", plot=False)
    on_disk = json.loads((tmp_path / "mm" / "summary.json").read_text())
    assert on_disk["spacing"] == summary["spacing"] == {"c0": [0.75, 0.75, 3.0], "c1": [1.0, 1.0, 2.5]}
    assert on_disk["units"]["hd95"].startswith("spacing units")
    assert "spacing" in pd.read_csv(tmp_path / "mm" / "metrics.csv").columns
    # an explicit spacing argument is what the summary records
    assert write_report(rows, tmp_path / "given", "standard", spacing=[2.0, 2.0, 2.0], plot=False)["spacing"] == [2.0, 2.0, 2.0]
    # no spacing anywhere: voxel units, and HD95 in voxels
    pred, ref = _case(22)
    vox = write_report(evaluate_case(pred, ref, ["bg", "box", "ball"], case="v"), tmp_path / "vox", "standard", plot=False)
    assert vox["spacing"] == "voxel units (no spacing given)" and vox["units"]["hd95"] == "voxels"
    # a scalar spacing applies to every axis; the transunet protocol ignores spacing
    assert evaluate_case(pred, ref, ["bg", "box", "ball"], spacing=0.5)[0]["spacing"] == [0.5, 0.5, 0.5]
    tu = evaluate_case(pred, ref, ["bg", "box", "ball"], spacing=(2.0, 2.0, 2.0), protocol="transunet")
    assert "spacing" not in tu[0]
    assert write_report(tu, tmp_path / "tu", "transunet", plot=False)["units"]["hd95"] == "voxels"
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(pred, ref, ["bg", "box", "ball"], spacing=(1.0, 2.0))


def test_summary_json_follows_the_json_policy(tmp_path):
    """A missed class has HD95 inf in the rows (counted, not hidden); summary.json stays strict JSON."""
    pred, ref = _case(5)
    pred[pred == 2] = 0  # the ball is missed entirely
    rows = evaluate_case(pred, ref, ["bg", "box", "ball"], spacing=(1.0, 1.0, 1.0), case="m")
    assert math.isinf(rows[1]["hd95"])
    summary = write_report(rows, tmp_path, "standard", plot=False, extra={"worst_hd95": float("inf"), "undefined": float("nan")})
    text = (tmp_path / "summary.json").read_text()
    assert "Infinity" not in text and "NaN" not in text
    on_disk = json.loads(text)
    assert on_disk["worst_hd95"] == "inf" and on_disk["undefined"] is None
    assert on_disk["classes"]["ball"]["n_hd95_inf"] == 1 and summary["worst_hd95"] == float("inf")
    assert pd.read_csv(tmp_path / "metrics.csv")["hd95"].tolist()[1] == float("inf")


def test_report_files_keep_the_default_permissions(tmp_path):
    pred, ref = _case(6)
    old = os.umask(0o022)
    try:
        write_report(evaluate_case(pred, ref, ["bg", "box", "ball"], case="p"), tmp_path, "transunet")
    finally:
        os.umask(old)
    for name in ("metrics.csv", "summary.json", "boxplot.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
