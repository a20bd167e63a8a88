"""2D evaluation: Dice, IoU, HD95 of images, micro (dataset-level) scores, PNG folders, overlays.

All data here is synthetic: squares drawn into small numpy images and written as PNG/TIFF files
with PIL/tifffile. The expected numbers are computed by hand in the comments (two 10x10 squares
shifted by two columns; a 2x2 square half predicted), not by the code under test.
"""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from monai.data import MetaTensor
from PIL import Image

from svseg.errors import InputError
from svseg.evaluation import (
    VolumeMetricsHandler,
    evaluate_case,
    evaluate_folders,
    load_label_volume,
    match_files,
    size_bin_labels,
    summarize,
)
from svseg.report import format_summary, overlay_size, write_overlays

NAMES = ["background", "vessel"]


def _shifted_squares(shape=(20, 20)):
    """Reference: 10x10 square at rows 2..11, cols 2..11; prediction: the same square two columns right.

    TP = 10*8 = 80, FP = FN = 20 -> Dice 160/200 = 0.8, IoU 80/120 = 2/3.
    Surface distances (pixels), each direction (the shift is mirror-symmetric), 36 border pixels:
    16 on the shared rows at distance 0, 4 at 1, 16 at 2 -> 95th percentile (index 33.25) = 2, mean 1.
    With spacing (0.5, 2.0) (rows, columns): 16 at 0, 2 each at 0.5, 1.0, 1.5, 4 at 2.0, 10 at 4.0 ->
    95th percentile 4.0, mean (1 + 2 + 3 + 8 + 40) / 36 = 1.5.
    """
    ref = np.zeros(shape, np.uint8)
    ref[2:12, 2:12] = 1
    pred = np.zeros(shape, np.uint8)
    pred[2:12, 4:14] = 1
    return pred, ref


def _png(path, arr):
    """A grey 8-bit PNG of ``arr``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, np.uint8), mode="L").save(path)
    return path


def _palette_mask(path, labels):
    """A palette PNG whose pixel values are palette indices (0 black, 1 red, 2 green)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(labels, np.uint8), mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    img.save(path)
    with Image.open(path) as check:
        assert check.mode == "P"
    return path


def test_2d_dice_iou_hd95_by_hand():
    pred, ref = _shifted_squares()
    row = evaluate_case(pred, ref, NAMES, case="sq")[0]
    assert row["dice"] == pytest.approx(0.8) and row["iou"] == pytest.approx(2 / 3)
    assert row["hd95"] == pytest.approx(2.0) and row["assd"] == pytest.approx(1.0)
    assert (row["tp"], row["fp"], row["fn"]) == (80, 20, 20)
    assert row["ndim"] == 2 and "spacing" not in row
    mm = evaluate_case(pred, ref, NAMES, spacing=(0.5, 2.0), case="sq")[0]
    assert mm["hd95"] == pytest.approx(4.0) and mm["assd"] == pytest.approx(1.5)
    assert mm["spacing"] == [0.5, 2.0] and mm["dice"] == pytest.approx(0.8)
    # the transunet protocol (medpy pooled percentile, voxel units) gives 2 pixels here too
    tu = evaluate_case(pred, ref, NAMES, spacing=(0.5, 2.0), protocol="transunet")[0]
    assert tu["hd95"] == pytest.approx(2.0) and tu["iou"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 values"):
        evaluate_case(pred, ref, NAMES, spacing=(1.0, 1.0, 1.0))


def test_iou_follows_the_empty_rules_of_each_protocol():
    z = np.zeros((8, 8), np.uint8)
    o = z.copy()
    o[2:4, 2:4] = 1
    std = {k: evaluate_case(p, r, NAMES)[0] for k, (p, r) in {"fp": (o, z), "miss": (z, o), "none": (z, z)}.items()}
    assert math.isnan(std["fp"]["iou"]) and math.isnan(std["none"]["iou"]) and std["miss"]["iou"] == 0.0
    assert (std["fp"]["tp"], std["fp"]["fp"], std["fp"]["fn"]) == (0, 4, 0)
    tu = {k: evaluate_case(p, r, NAMES, protocol="transunet")[0] for k, (p, r) in
          {"fp": (o, z), "miss": (z, o), "none": (z, z)}.items()}
    assert [tu[k]["iou"] for k in ("fp", "miss", "none")] == [1.0, 0.0, 0.0]  # as TransUNet's Dice (1, 0, 0)
    assert [tu[k]["dice"] for k in ("fp", "miss", "none")] == [1.0, 0.0, 0.0]
    # a class found in no image has no dataset-level score (rather than a 0/0)
    nowhere = summarize([std["none"]], "standard")
    assert nowhere["classes"]["vessel"]["micro_dice"] is None and "micro_dice" not in nowhere["overall"]


def test_micro_scores_differ_from_the_per_image_mean():
    # image a: 4x4 square predicted exactly (TP 16); image b: 2x2 square, prediction one column off
    # (TP 2, FP 2, FN 2: Dice 0.5, IoU 1/3). Per image: Dice (1 + 0.5) / 2 = 0.75, IoU (1 + 1/3) / 2 = 2/3.
    # Pooled: TP 18, FP 2, FN 2 -> Dice 36/40 = 0.9, IoU 18/22 = 9/11.
    a = np.zeros((10, 10), np.uint8)
    a[3:7, 3:7] = 1
    b_ref = np.zeros((10, 10), np.uint8)
    b_ref[4:6, 4:6] = 1
    b_pred = np.zeros_like(b_ref)
    b_pred[4:6, 5:7] = 1
    for protocol in ("standard", "transunet"):
        rows = evaluate_case(a, a, NAMES, case="a", protocol=protocol) + evaluate_case(b_pred, b_ref, NAMES, case="b", protocol=protocol)
        s = summarize(rows, protocol)
        c = s["classes"]["vessel"]
        assert c["dice"] == 0.75 and c["iou"] == pytest.approx(2 / 3, abs=1e-15)
        assert c["micro_dice"] == pytest.approx(0.9, abs=1e-15) and c["micro_iou"] == pytest.approx(9 / 11, abs=1e-15)
        assert (c["tp"], c["fp"], c["fn"]) == (18, 2, 2)
        assert s["overall"]["micro_dice"] == c["micro_dice"] and s["overall"]["iou"] == c["iou"]
    # an image without the object but with a false positive: left out of the standard per-image mean,
    # counted by the dataset-level scores (TP 18, FP 2 + 4, FN 2 -> Dice 36/44, IoU 18/26)
    empty, fp = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    fp[0:2, 0:2] = 1
    rows = evaluate_case(a, a, NAMES, case="a") + evaluate_case(b_pred, b_ref, NAMES, case="b")
    rows += evaluate_case(fp, empty, NAMES, case="c")
    c = summarize(rows, "standard")["classes"]["vessel"]
    assert c["dice"] == 0.75 and c["n_fp_on_empty_ref"] == 1
    assert c["micro_dice"] == pytest.approx(36 / 44, abs=1e-15) and c["micro_iou"] == pytest.approx(18 / 26, abs=1e-15)


def test_summary_of_rows_without_counts_keeps_its_old_keys():
    rows = [{"case": "a", "class": "x", "dice": 0.8, "hd95": 2.0, "pred_voxels": 5, "ref_voxels": 5}]
    s = summarize(rows, "standard")
    assert set(s["classes"]["x"]) == {"dice", "hd95", "n_cases", "n_evaluated", "n_empty_ref", "n_hd95_inf",
                                      "n_fp_on_empty_ref"}
    assert set(s["overall"]) == {"dice", "hd95", "n_cases", "n_classes"}


def test_mask_files_read_as_class_ids(tmp_path):
    labels = np.zeros((6, 7), np.uint8)
    labels[1:3, 2:5] = 1
    labels[4, 1] = 2
    binary = load_label_volume(_png(tmp_path / "bin.png", (labels > 0) * 255))
    assert binary[0].shape == (6, 7) and set(np.unique(binary[0]).tolist()) == {0, 1} and binary[2] is None
    palette, affine, spacing = load_label_volume(_palette_mask(tmp_path / "pal.png", labels))
    np.testing.assert_array_equal(palette, labels)
    assert spacing is None and affine.shape == (3, 3)
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[labels == 1] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(InputError, match="colour.png: .*colour"):
        load_label_volume(tmp_path / "colour.png")
    with pytest.raises(FileNotFoundError):
        load_label_volume(tmp_path / "missing.png")


def test_match_files_pairs_2d_predictions_with_masks(tmp_path):
    pred, ref = _shifted_squares()
    _png(tmp_path / "pred" / "tile03_seg.png", pred)
    _png(tmp_path / "pred" / "tile04_seg.png", pred)
    _png(tmp_path / "masks" / "tile03.png", ref * 255)
    Image.fromarray(ref * 255).save(tmp_path / "masks" / "tile04.jpg")  # JPEG references are listed too
    (tmp_path / "pred" / "notes.txt").write_text("no label map")
    pairs = match_files(tmp_path / "pred", tmp_path / "masks")
    assert [(c, p.name, r.name) for c, p, r in pairs] == [("tile03", "tile03_seg.png", "tile03.png"),
                                                         ("tile04", "tile04_seg.png", "tile04.jpg")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .nii"):
        match_files(tmp_path / "empty", tmp_path / "masks")


def _tile_folders(tmp_path):
    """tile01: the shifted squares, reference a 0/255 grey PNG, prediction a grey PNG of class ids;
    tile02: a 4x4 square predicted exactly, reference a palette PNG, prediction a TIFF."""
    pred, ref = _shifted_squares()
    _png(tmp_path / "pred" / "tile01_seg.png", pred)
    _png(tmp_path / "masks" / "tile01.png", ref * 255)
    sq = np.zeros((12, 16), np.uint8)
    sq[5:9, 6:10] = 1
    _palette_mask(tmp_path / "masks" / "tile02.png", sq)
    tifffile.imwrite(tmp_path / "pred" / "tile02_seg.tif", sq)
    return tmp_path / "pred", tmp_path / "masks"


def test_png_folder_evaluation_end_to_end(tmp_path):
    pred_dir, ref_dir = _tile_folders(tmp_path)
    summary = evaluate_folders(pred_dir, ref_dir, tmp_path / "px", class_names=NAMES, progress=False)
    df = pd.read_csv(tmp_path / "px" / "metrics.csv").set_index("case")
    assert list(df.index) == ["tile01", "tile02"]
    assert df.loc["tile01", "dice"] == pytest.approx(0.8) and df.loc["tile01", "iou"] == pytest.approx(2 / 3)
    assert df.loc["tile01", "hd95"] == pytest.approx(2.0) and df.loc["tile02", "hd95"] == 0.0
    assert df.loc["tile02", "dice"] == 1.0 and df.loc["tile02", "iou"] == 1.0
    assert df.loc["tile01", ["tp", "fp", "fn"]].tolist() == [80, 20, 20]
    on_disk = json.loads((tmp_path / "px" / "summary.json").read_text())
    assert on_disk["units"]["hd95"] == "pixels" and on_disk["spacing"] == "pixel units (no spacing given)"
    vessel = on_disk["classes"]["vessel"]
    # micro: TP 80 + 16, FP 20, FN 20 -> Dice 192/232, IoU 96/136; per image: IoU (2/3 + 1) / 2
    assert vessel["micro_dice"] == pytest.approx(192 / 232) and vessel["micro_iou"] == pytest.approx(96 / 136)
    assert vessel["iou"] == pytest.approx(5 / 6) and vessel["dice"] == pytest.approx(0.9)
    assert on_disk["overall"]["micro_iou"] == pytest.approx(96 / 136) and summary["cases"] == ["tile01", "tile02"]
    assert (tmp_path / "px" / "boxplot.png").is_file()
    text = format_summary(tmp_path / "px")
    assert "HD95 px" in text and "micro Dice" in text
    assert "0.8276" in text and "0.7059" in text and "0.8333" in text  # micro Dice, micro IoU, mean IoU
    # a pixel size given for the 2D files: HD95 in spacing units (columns 2.0 -> 4.0)
    mm = evaluate_folders(pred_dir, ref_dir, tmp_path / "mm", class_names=NAMES, spacing=(0.5, 2.0), plot=False,
                          progress=False)
    df_mm = pd.read_csv(tmp_path / "mm" / "metrics.csv").set_index("case")
    assert df_mm.loc["tile01", "hd95"] == pytest.approx(4.0) and df_mm.loc["tile01", "assd"] == pytest.approx(1.5)
    assert mm["spacing"] == {"tile01": [0.5, 2.0], "tile02": [0.5, 2.0]}
    assert mm["units"]["hd95"].startswith("spacing units")


def test_shape_mismatch_names_the_file(tmp_path):
    pred, ref = _shifted_squares()
    _png(tmp_path / "pred" / "tile01_seg.png", pred[:, :-1])
    _png(tmp_path / "masks" / "tile01.png", ref * 255)
    with pytest.raises(ValueError, match=r"tile01_seg\.png has shape \(20, 19\).*tile01\.png \(20, 20\)"):
        evaluate_folders(tmp_path / "pred", tmp_path / "masks", tmp_path / "out", class_names=NAMES, progress=False)


def test_small_objects_on_2d_images(tmp_path):
    # 100x100 image: objects of 16 px (0.16 % of the image, missed) and 900 px (9 %, found)
    ref = np.zeros((100, 100), np.uint8)
    ref[5:9, 5:9] = 1
    ref[50:80, 50:80] = 1
    pred = np.zeros_like(ref)
    pred[50:80, 50:80] = 1
    _png(tmp_path / "pred" / "img_seg.png", pred)
    _png(tmp_path / "masks" / "img.png", ref * 255)
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "masks", tmp_path / "out", class_names=NAMES,
                               small_objects=True, plot=False, progress=False)
    so = pd.read_csv(tmp_path / "out" / "small_objects.csv").sort_values("size_voxels")
    assert so["size_pct"].tolist() == pytest.approx([0.16, 9.0])
    bins = size_bin_labels()
    assert so["size_bin"].tolist() == [bins[0], bins[5]] and so["detected"].tolist() == [False, True]
    objs = summary["small_objects"]
    assert objs["size_reference"] == "image"
    assert objs["below"]["<0.5%"]["recall"] == 0.0 and objs["below"]["<10%"]["recall"] == 0.5


def _png_pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def _reddish(rgb):
    """Number of pixels whose red exceeds green by more than 100 (none in grey or blue)."""
    return int(((rgb[..., 0] - rgb[..., 1]) > 100).sum())


def test_overlays_of_2d_files_one_panel_rgb_in_colour(tmp_path):
    pred_dir, ref_dir = _tile_folders(tmp_path)
    red = np.zeros((20, 20, 3), np.uint8)
    red[...] = (200, 30, 30)
    (tmp_path / "images").mkdir()
    Image.fromarray(red).save(tmp_path / "images" / "tile01.png")
    Image.fromarray(np.full((12, 16), 90, np.uint8)).save(tmp_path / "images" / "tile02_0000.jpg")
    written = write_overlays(pred_dir, ref_dir, tmp_path / "images", tmp_path / "out", n_slices=4, class_names=NAMES,
                             progress=False)
    assert [p.name for p in written] == ["tile01.png", "tile02.png"]
    for p in written:
        with Image.open(p) as im:
            assert im.size == overlay_size(1)  # one panel, whatever n_slices says
    assert _reddish(_png_pixels(written[0])) > 1000  # the RGB image is drawn in colour
    assert _reddish(_png_pixels(written[1])) == 0  # a grey image stays grey (contours are blue)


def test_handler_scores_2d_items(tmp_path):
    pred, ref = _shifted_squares()
    rgb = np.zeros((3, 20, 20), np.float32)
    rgb[0] = 200.0

    def item(affine, meta):
        image = MetaTensor(torch.from_numpy(rgb), affine=torch.from_numpy(affine), meta=meta)
        return {"image": image, "pred": torch.from_numpy(pred)[None], "label": torch.from_numpy(ref)[None]}

    # Image2DReader's flag with an identity affine (pixels); no flag, an affine with a pixel size:
    # a channel-first (C, H, W) item is 2D by its shape
    for name, affine, meta, hd95, unit in (("px", np.eye(3), {"image_2d": True}, 2.0, "pixels"),
                                           ("sp", np.diag([0.5, 2.0, 1.0]), {}, 4.0, "spacing")):
        handler = VolumeMetricsHandler(tmp_path / name, NAMES)
        engine = SimpleNamespace(state=SimpleNamespace(output=[item(affine, meta)], batch=[{"case": "t1"}], epoch_length=1))
        handler.iteration_completed(engine)
        handler.completed(engine)
        row = handler.rows[0]
        assert row["ndim"] == 2 and row["dice"] == pytest.approx(0.8) and row["hd95"] == pytest.approx(hd95)
        assert handler.summary["units"]["hd95"].startswith(unit)
        with Image.open(tmp_path / name / "overlays" / "t1.png") as im:
            assert im.size == overlay_size(1)
