"""Tests of :mod:`svseg.report` on synthetic volumes: the one box plot (from rows or from a
``metrics.csv``) and the overlay folder logic (pairing by case id through :mod:`svseg.io`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from svseg.io import atomic_save_nifti
from svseg.report import boxplot_png, format_summary, overlay_size, report, write_overlays

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_boxplot_from_rows_equals_boxplot_from_the_csv(tmp_path):
    rows = [
        {"case": "a", "class": "liver", "dice": 0.9, "hd95": 3.0},
        {"case": "b", "class": "liver", "dice": 0.0, "hd95": math.inf},  # missed: left out of the box
        {"case": "a", "class": "kidney", "dice": math.nan, "hd95": math.nan},  # empty reference: no box
        {"case": "b", "class": "kidney", "dice": 0.7, "hd95": 5.0},
    ]
    from_rows = boxplot_png(rows, tmp_path / "rows.png", protocol="standard", hd95_unit="voxels")
    (tmp_path / "metrics.csv").write_text("case,class,dice,hd95\na,liver,0.9,3.0\nb,liver,0.0,inf\na,kidney,,\nb,kidney,0.7,5.0\n")
    from_csv = boxplot_png(tmp_path / "metrics.csv", tmp_path / "csv.png", protocol="standard", hd95_unit="voxels")
    assert from_rows == tmp_path / "rows.png" and from_csv == tmp_path / "csv.png"
    assert _png_size(from_rows) == _png_size(from_csv)
    with Image.open(from_rows) as a, Image.open(from_csv) as b:  # same data, same picture
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["csv.png", "metrics.csv", "rows.png"]


def test_boxplot_rejects_empty_or_incomplete_tables(tmp_path):
    with pytest.raises(ValueError, match="no rows"):
        boxplot_png([], tmp_path / "x.png")
    (tmp_path / "m.csv").write_text("case,dice\na,0.5\n")
    with pytest.raises(ValueError, match="m.csv has no 'class' column"):
        boxplot_png(tmp_path / "m.csv", tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _volumes(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(16, 14, 6)).astype(np.float32)
    ref = np.zeros(image.shape, np.uint8)
    ref[4:10, 3:9, 1:5] = 1
    pred = np.roll(ref, 1, axis=0)
    return image, ref, pred


def test_write_overlays_pairs_predictions_references_and_images_by_case(tmp_path):
    dirs = {k: tmp_path / k for k in ("img", "pred", "ref", "out")}
    for case, seed in (("c1", 1), ("c2", 2)):
        image, ref, pred = _volumes(seed)
        atomic_save_nifti(image, AFFINE, dirs["img"] / f"{case}_0000.nii.gz")  # nnU-Net image name
        atomic_save_nifti(ref, AFFINE, dirs["ref"] / f"{case}.nii.gz")
        atomic_save_nifti(pred, AFFINE, dirs["pred"] / f"{case}_pred.nii.gz")
    atomic_save_nifti(_volumes(3)[2], AFFINE, dirs["pred"] / "c3.nii.gz")  # no reference, no image
    with pytest.warns(UserWarning, match="c3.nii.gz"):
        written = write_overlays(dirs["pred"], dirs["ref"], dirs["img"], dirs["out"], n_slices=2, progress=False)
    assert written == [dirs["out"] / "overlays" / "c1.png", dirs["out"] / "overlays" / "c2.png"]
    assert all(_png_size(p) == overlay_size(2) for p in written)
    # without references: prediction contours only, for the chosen cases that have an image
    for case in ("c1", "c2", "c3"):
        atomic_save_nifti(_volumes(4)[2], AFFINE, tmp_path / "pred2" / f"{case}.nii")
    with pytest.warns(UserWarning, match="no image for case c3"):
        only_pred = write_overlays(tmp_path / "pred2", None, dirs["img"], tmp_path / "out2", n_slices=1, progress=False,
                                   cases=["c1", "c3"])
    assert only_pred == [tmp_path / "out2" / "overlays" / "c1.png"]
    with pytest.raises(FileNotFoundError, match="image_dir"):
        write_overlays(dirs["pred"], dirs["ref"], tmp_path / "nothing", dirs["out"])



def test_report_rebuilds_the_box_plot_and_table_in_the_evaluation_units(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("case,class,dice,hd95\na,liver,0.9,3.0\nb,liver,0.8,inf\n")
    (tmp_path / "summary.json").write_text('{"protocol": "standard", "units": {"hd95": "voxels"}}')
    res = report(tmp_path, overlays=False)
    assert res["boxplot"] == tmp_path / "boxplot.png" and _png_size(res["boxplot"])[0] >= 600
    assert "HD95 vox" in res["summary"] and "0.8500" in res["summary"] and "3.00" in res["summary"]
    (tmp_path / "summary.json").write_text('{"protocol": "standard", "units": {"hd95": "spacing units (mm for NIfTI)"}}')
    assert "HD95 mm" in format_summary(tmp_path)
    (tmp_path / "summary.json").write_text('{"protocol": "transunet"}')  # older summaries: the protocol decides
    assert "HD95 vox" in format_summary(tmp_path)
    assert "liver" in capsys.readouterr().out
