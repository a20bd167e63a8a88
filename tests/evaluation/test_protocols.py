"""The papers' evaluation protocols against numbers worked out by hand on tiny label maps.

Cases (4x4 images, binary unless said): ``single`` = the reference is one pixel, the prediction that
pixel plus one false pixel (tp 1, fp 1, fn 0, tn 14); ``empty`` = reference and prediction all
background; ``missed`` = a two-pixel reference, an empty prediction; ``absent`` = three classes, the
first image holds class 1 and a false class-2 pixel, class 2 being absent from its reference.
"""
from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from svseg.data.specs import SVANET_BINS
from svseg.evaluation import (
    EVALUATION_PROTOCOLS,
    PAPER_PROTOCOLS,
    class_counts,
    evaluate_case,
    evaluate_folders,
    largest_object_pct,
    summarize,
)
from svseg.report import format_summary

EPS = 1e-7
BINARY = ["background", "fg"]
THREE = ["background", "one", "two"]


def single():
    ref = np.zeros((4, 4), np.uint8)
    ref[0, 0] = 1
    pred = ref.copy()
    pred[3, 3] = 1
    return pred, ref


def empty():
    return np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)


def missed():
    ref = np.zeros((4, 4), np.uint8)
    ref[1, 1:3] = 1
    return np.zeros((4, 4), np.uint8), ref


def absent_pair():
    """Image X: class 1 right (2 px), a false class-2 pixel; image Y: class 2 right (1 px)."""
    rx = np.zeros((4, 4), np.uint8)
    rx[0, :2] = 1
    px = rx.copy()
    px[2, 2] = 2
    ry = np.zeros((4, 4), np.uint8)
    ry[3, 3] = 2
    return (px, rx), (ry.copy(), ry)


def rows_of(protocol, cases, names=BINARY):
    rows = []
    for i, (pred, ref) in enumerate(cases):
        rows.extend(evaluate_case(pred, ref, names, protocol=protocol, case=f"c{i}"))
    return rows


def one(rows, case, cls):
    (row,) = [r for r in rows if r["case"] == case and r["class"] == cls]
    return row


def test_protocol_names_are_registered():
    assert EVALUATION_PROTOCOLS == ("standard", "transunet", "svanet", "uctransnet", "awesome_unet", "msga", "afma")
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate_case(*single(), BINARY, protocol="svanet2")
    with pytest.raises(ValueError, match="protocol must be one of"):
        summarize([{"case": "a", "class": "fg", "dice": 1.0, "hd95": 0.0}], "nope")


@pytest.mark.parametrize("protocol", PAPER_PROTOCOLS)
def test_every_row_has_counts_and_no_distance(protocol):
    rows = evaluate_case(*single(), BINARY, protocol=protocol, case="a")
    fg = one(rows, "a", "fg")
    assert (fg["tp"], fg["fp"], fg["fn"], fg["tn"]) == (1, 1, 0, 14)
    assert math.isnan(fg["hd95"]) and fg["ndim"] == 2 and fg["label"] == 1
    assert [r["class"] for r in rows] == (BINARY if protocol == "svanet" else ["fg"])


# --- uctransnet: test_model.py show_image_with_dice ---------------------------------------------

def test_uctransnet_hand_values():
    rows = rows_of("uctransnet", [single(), empty(), missed()])
    assert one(rows, "c0", "fg")["dice"] == pytest.approx(2 / (1 + 2 + 1e-5), abs=1e-12)
    assert one(rows, "c0", "fg")["iou"] == 0.5
    for case in ("c1", "c2"):  # two empty masks and a missed object: 0 (smoothing only in the denominator)
        assert one(rows, case, "fg")["dice"] == 0.0 and one(rows, case, "fg")["iou"] == 0.0
    s = summarize(rows, "uctransnet")
    assert s["classes"]["fg"]["dice"] == pytest.approx(2 / 3.00001 / 3, abs=1e-12)  # summed, / number of images
    assert s["overall"]["iou"] == pytest.approx(0.5 / 3) and s["overall"]["n_cases"] == 3


def test_uctransnet_absent_class_and_all_background():
    rows = rows_of("uctransnet", list(absent_pair()), THREE)
    assert one(rows, "c0", "two")["dice"] == 0.0 and one(rows, "c0", "two")["iou"] == 0.0
    assert one(rows, "c1", "one")["dice"] == 0.0  # class 1 in neither map of image Y
    assert one(rows, "c0", "one")["dice"] == pytest.approx(4 / (4 + 1e-5))
    s = summarize(rows_of("uctransnet", [empty(), empty()]), "uctransnet")
    assert s["overall"]["dice"] == 0.0 and s["overall"]["iou"] == 0.0


# --- awesome_unet: torchmetrics MetricCollection, states pooled over the test loader ----------

def test_awesome_unet_pooled_hand_values():
    rows = rows_of("awesome_unet", [single(), empty()])
    s = summarize(rows, "awesome_unet")["classes"]["fg"]
    # pooled: tp 1, fp 1, fn 0, tn 30
    assert s["dice"] == pytest.approx(2 / 3) and s["iou"] == 0.5
    assert s["jaccard_index"] == pytest.approx((0.5 + 30 / 31) / 2)
    assert s["accuracy"] == pytest.approx(31 / 32) and s["precision"] == 0.5 and s["recall"] == 1.0
    assert s["specificity"] == pytest.approx(30 / 31)
    assert s["per_image_mean"]["dice"] == pytest.approx(1 / 3)  # the all-background image scores 0 alone
    b = one(rows, "c1", "fg")
    assert (b["dice"], b["iou"], b["precision"], b["recall"]) == (0.0, 0.0, 0.0, 0.0)  # zero_division = 0
    assert (b["accuracy"], b["specificity"], b["jaccard_index"]) == (1.0, 1.0, 0.5)  # absent fg IoU scores 0


def test_awesome_unet_missed_and_absent_class():
    m = one(rows_of("awesome_unet", [missed()]), "c0", "fg")
    assert (m["dice"], m["recall"], m["precision"]) == (0.0, 0.0, 0.0)
    assert m["accuracy"] == pytest.approx(14 / 16) and m["jaccard_index"] == pytest.approx(14 / 16 / 2)
    s = summarize(rows_of("awesome_unet", list(absent_pair()), THREE), "awesome_unet")["classes"]["two"]
    assert s["dice"] == pytest.approx(2 / 3) and s["precision"] == 0.5 and s["recall"] == 1.0


# --- msga: evaluate3D, medpy dc per class per subject -----------------------------------------

def test_msga_hand_values():
    rows = rows_of("msga", [single(), empty(), missed()])
    assert [one(rows, c, "fg")["dice"] for c in ("c0", "c1", "c2")] == pytest.approx([2 / 3, 0.0, 0.0])
    s = summarize(rows, "msga")
    assert s["classes"]["fg"]["dice"] == pytest.approx(2 / 9)
    assert s["classes"]["fg"]["dice_std"] == pytest.approx(np.std([2 / 3, 0, 0]))
    volume = np.stack([single()[1], empty()[1]], axis=-1)  # one subject of two slices
    (row,) = evaluate_case(np.stack([single()[0], empty()[0]], axis=-1), volume, BINARY, protocol="msga")
    assert row["dice"] == pytest.approx(2 / 3) and row["ndim"] == 3


def test_msga_absent_class():
    rows = rows_of("msga", list(absent_pair()), THREE)
    assert one(rows, "c0", "two")["dice"] == 0.0 and one(rows, "c1", "one")["dice"] == 0.0
    s = summarize(rows, "msga")
    assert s["classes"]["two"]["dice"] == pytest.approx(0.5) and s["overall"]["dice"] == pytest.approx(0.5)


# --- afma: utils/train.py Epoch.run over confusion_matrix_fn ----------------------------------

def test_afma_hand_values():
    s = summarize(rows_of("afma", [single(), empty()]), "afma")
    assert s["classes"]["fg"]["iou"] == 0.5 and s["classes"]["fg"]["accuracy"] == pytest.approx(31 / 32)
    assert s["overall"]["mean_iou"] == 0.5 and s["overall"]["global_iou"] == 0.5
    s = summarize(rows_of("afma", [missed()]), "afma")["overall"]
    assert s["mean_iou"] == 0.0 and s["accuracy"] == pytest.approx(14 / 16)


def test_afma_absent_class_and_all_background():
    s = summarize(rows_of("afma", list(absent_pair()), THREE), "afma")
    assert s["classes"]["one"]["iou"] == 1.0 and s["classes"]["two"]["iou"] == 0.5
    assert s["overall"]["mean_iou"] == 0.75 and s["overall"]["global_iou"] == 0.75
    assert s["overall"]["accuracy"] == pytest.approx((1 + 31 / 32) / 2)
    bg = summarize(rows_of("afma", [empty(), empty()]), "afma")
    assert bg["classes"]["fg"]["iou"] is None and bg["overall"]["n_classes_absent"] == 1
    assert bg["overall"]["mean_iou"] is None and bg["overall"]["global_iou"] is None
    assert bg["overall"]["accuracy"] == 1.0


# --- svanet: computeMetrics / manageMetricMM / measureEAM / computeAE -------------------------

def e_pixel(p, g, mu_p, mu_g):
    ag, ap = g - mu_g, p - mu_p
    return ((2 * ag * ap / (ag * ag + ap * ap + EPS)) + 1) ** 2 / 4


def test_svanet_hand_values():
    rows = rows_of("svanet", [single(), empty()])
    s = summarize(rows, "svanet")
    bg, fg = s["classes"]["background"], s["classes"]["fg"]
    # background: I 30, pred 30, ref 31, in 2 images; fg: I 1, pred 2, ref 1, in 1 image
    assert bg["iou"] == pytest.approx(30 / (31 + EPS)) and bg["n_images_present"] == 2
    assert fg["iou"] == pytest.approx(1 / (2 + EPS)) and fg["n_images_present"] == 1
    assert fg["dice"] == pytest.approx(2 / (3 + EPS)) and fg["precision"] == pytest.approx(0.5)
    assert fg["recall"] == pytest.approx(1.0) and fg["f2"] == pytest.approx(5 * 0.5 / 3)
    o = s["overall"]
    assert o["micro_iou"] == pytest.approx((2 * 30 / 31 + 0.5) / 3)
    assert o["micro_dice"] == pytest.approx((2 * 60 / 61 + 2 / 3) / 3)
    assert o["recall"] == pytest.approx((2 * 30 / 31 + 1) / 3) and o["precision"] == pytest.approx((2 + 0.5) / 3)
    mu_p, mu_g = 2 / 32, 1 / 32
    e_a = e_pixel(1, 1, mu_p, mu_g) + e_pixel(1, 0, mu_p, mu_g) + 14 * e_pixel(0, 0, mu_p, mu_g)
    e_b = 16 * e_pixel(0, 0, mu_p, mu_g)
    assert o["e_measure"] == pytest.approx((e_a + e_b) / (15 + EPS) / 2)
    assert o["mae"] == pytest.approx(1 / 32 / 2)  # mean error, divided once more by the image count
    assert one(rows, "c0", "fg")["size_pct"] == 6.25 and one(rows, "c1", "fg")["size_pct"] == 0.0


def test_svanet_tiny_table_subsets():
    tiny = summarize(rows_of("svanet", [single(), empty()]), "svanet")["tiny_objects"]
    # the empty image (0 %) is in every subset; the 6.25 % image from "< 10 %" on, which ends the table
    assert [t["below_pct"] for t in tiny] == [0.5, 1, 2, 3, 5, 10]
    assert [t["n_cases"] for t in tiny] == [1, 1, 1, 1, 1, 2]
    only_bg = tiny[0]
    assert only_bg["micro_iou"] == pytest.approx(16 / (16 + EPS))  # fg weighs 0: in no reference
    assert only_bg["e_measure"] == pytest.approx(16 / (15 + EPS))  # all-black GT: E = 1 - pred, / (HW - 1)
    assert only_bg["mae"] == 0.0
    assert tiny[-1]["micro_iou"] == pytest.approx((2 * 30 / 31 + 0.5) / 3)
    assert list(SVANET_BINS) == [0.5, 1, 2, 3, 5, 10, 100]
    full = np.ones((4, 4), np.uint8)  # an object filling the image (100 %) is dropped from every subset
    tiny = summarize(rows_of("svanet", [single(), (full, full)]), "svanet")["tiny_objects"]
    assert [t["n_cases"] for t in tiny] == [1]


def test_svanet_absent_class_and_missed():
    s = summarize(rows_of("svanet", list(absent_pair()), THREE), "svanet")
    assert [s["classes"][c]["n_images_present"] for c in THREE] == [2, 1, 1]
    assert s["classes"]["two"]["iou"] == pytest.approx(0.5)
    assert s["overall"]["micro_iou"] == pytest.approx((2 * 28 / 29 + 1 + 0.5) / 4)
    m = summarize(rows_of("svanet", [missed()]), "svanet")
    assert m["classes"]["fg"]["iou"] == 0.0 and m["classes"]["fg"]["recall"] == 0.0
    assert m["overall"]["mae"] == pytest.approx(2 / 16)


def test_svanet_counts_drop_ignored_pixels_and_size_is_the_largest_object():
    ref = np.array([[1, 255], [0, 0]])
    pred = np.array([[1, 1], [0, 1]])
    c = class_counts(pred, ref, 2, ignore_index=255)
    assert c["tp"].tolist() == [1, 1] and c["fp"].tolist() == [0, 1] and c["fn"].tolist() == [1, 0]
    ref = np.zeros((4, 4), np.uint8)
    ref[0, 0] = ref[1, 1] = ref[2, 1] = 1  # diagonal neighbours: one object of 3
    ref[3, 3] = 2
    assert largest_object_pct(ref) == pytest.approx(3 / 16 * 100)
    assert largest_object_pct(np.zeros((4, 4))) == 0.0


# --- evaluate_folders, one per protocol ------------------------------------------------------

def write_png_pairs(tmp_path, cases):
    for sub in ("pred", "ref"):
        (tmp_path / sub).mkdir()
    for i, (pred, ref) in enumerate(cases):
        Image.fromarray(pred.astype(np.uint8), mode="L").save(tmp_path / "pred" / f"img{i}_seg.png")
        Image.fromarray(ref.astype(np.uint8), mode="L").save(tmp_path / "ref" / f"img{i}.png")


@pytest.mark.parametrize("protocol", ["svanet", "uctransnet", "awesome_unet", "afma"])
def test_evaluate_folders_png(tmp_path, protocol):
    cases = [single(), empty()]
    write_png_pairs(tmp_path, cases)
    out = tmp_path / "out"
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "ref", out, protocol=protocol,
                               class_names=BINARY, progress=False)
    expected = summarize(rows_of(protocol, cases), protocol)
    stored = json.loads((out / "summary.json").read_text())
    assert stored["protocol"] == protocol and stored["reproduces"] == expected["reproduces"]
    assert stored["units"]["hd95"].startswith("not computed")
    key = {"svanet": "micro_iou", "uctransnet": "iou", "awesome_unet": "jaccard_index", "afma": "mean_iou"}[protocol]
    assert stored["overall"][key] == pytest.approx(expected["overall"][key])
    assert summary["overall"][key] == pytest.approx(expected["overall"][key])
    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns[:4]) == ["case", "class", "dice", "hd95"] and set(table["case"]) == {"img0", "img1"}
    assert (out / "boxplot.png").is_file()
    text = format_summary(out)
    assert f"protocol {protocol}" in text and "reproduces:" in text
    if protocol == "svanet":
        assert len(stored["tiny_objects"]) == 6 and "< 10 %" in text


def test_evaluate_folders_msga_nifti(tmp_path):
    for sub in ("pred", "ref"):
        (tmp_path / sub).mkdir()
    subjects = {"Subj_1": (np.stack([single()[0], missed()[0]], -1), np.stack([single()[1], missed()[1]], -1)),
                "Subj_2": (np.stack([empty()[0]] * 2, -1), np.stack([empty()[1]] * 2, -1))}
    for name, (pred, ref) in subjects.items():
        nib.save(nib.Nifti1Image(pred.astype(np.uint8), np.eye(4)), str(tmp_path / "pred" / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(ref.astype(np.uint8), np.eye(4)), str(tmp_path / "ref" / f"{name}.nii.gz"))
    summary = evaluate_folders(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", protocol="msga",
                               class_names=BINARY, progress=False, plot=False)
    # subject 1: tp 1, fp 1, fn 2 -> 2/5; subject 2: empty -> 0 (medpy dc)
    assert summary["classes"]["fg"]["dice"] == pytest.approx((2 / 5 + 0) / 2)
    assert summary["overall"]["n_cases"] == 2
