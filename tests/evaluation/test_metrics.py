"""Protocol equivalence tests on small synthetic volumes.

All volumes here are synthetic (random blobs, single voxels, masks touching the array border,
empty masks). ``transunet`` values must equal medpy's ``dc``/``hd95`` under TransUNet's empty
rules; ``standard`` values must equal MONAI's ``compute_hausdorff_distance(percentile=95)`` and
``compute_average_surface_distance(symmetric=True)`` with the same spacing.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from medpy.metric import binary as medpy_binary
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from scipy import ndimage

from svseg.evaluation import (
    average_symmetric_surface_distance,
    dice,
    evaluate_case,
    hd95_max_directed,
    hd95_pooled,
    standard_case_metrics,
    surface_distances,
    transunet_case_metrics,
)


def _blobs(shape, n_classes, rng, sigma=1.5):
    """Synthetic label map: smoothed noise, thresholded per class (irregular, multi-component blobs)."""
    field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    qs = np.quantile(field, np.linspace(0.45, 0.95, n_classes + 1))
    return np.digitize(field, qs[1:]).astype(np.uint8) * (rng.random() > -1)


def _medpy_transunet(pred, gt):
    """TransUNet's calculate_metric_percase, with medpy as the reference."""
    pred, gt = pred.astype(np.uint8), gt.astype(np.uint8)
    if pred.sum() > 0 and gt.sum() > 0:
        return medpy_binary.dc(pred, gt), medpy_binary.hd95(pred, gt)
    if pred.sum() > 0 and gt.sum() == 0:
        return 1, 0
    return 0, 0


def _special_pairs():
    """(pred, ref) binary pairs covering the edge cases, synthetic."""
    pairs = []
    a = np.zeros((12, 14, 10), bool)
    b = np.zeros_like(a)
    a[3, 4, 5] = True  # one voxel each
    b[8, 10, 2] = True
    pairs.append(("one_voxel_each", a.copy(), b.copy()))
    b2 = np.zeros_like(a)
    b2[3, 4, 5] = True
    pairs.append(("one_voxel_identical", a.copy(), b2))
    c = np.zeros_like(a)
    c[:, :, :3] = True  # touches five borders
    d = np.zeros_like(a)
    d[:4, 2:, 1:6] = True
    pairs.append(("touching_borders", c, d))
    full = np.ones_like(a)
    pairs.append(("full_volume_vs_box", full, d))
    e = np.zeros_like(a)
    e[0, 0, 0] = True  # corner voxel
    pairs.append(("corner_voxel", e, d))
    f = np.zeros_like(a)
    f[2:5, 2:5, 2:5] = True
    f[9:11, 10:13, 7:9] = True  # two components
    pairs.append(("two_components", f, d))
    return pairs


def _random_pairs(n=6, seed=1):
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        shape = tuple(int(s) for s in rng.integers(8, 24, size=3))
        ref = _blobs(shape, 1, rng) > 0
        pred = ndimage.binary_dilation(ref, iterations=int(rng.integers(0, 2))) ^ (rng.random(shape) > 0.97)
        pairs.append((f"random{i}", pred, ref))
    return pairs


CASES = _special_pairs() + _random_pairs()


@pytest.mark.parametrize("name,pred,ref", CASES, ids=[c[0] for c in CASES])
def test_transunet_equals_medpy(name, pred, ref):
    ours = transunet_case_metrics(pred, ref)
    theirs = _medpy_transunet(pred, ref)
    assert abs(ours[0] - theirs[0]) < 1e-6 and abs(ours[1] - theirs[1]) < 1e-6, (name, ours, theirs)
    # the same through the swapped arguments (medpy hd95 is symmetric)
    assert abs(transunet_case_metrics(ref, pred)[1] - _medpy_transunet(ref, pred)[1]) < 1e-6


@pytest.mark.parametrize("spacing", [None, (1.0, 1.0, 1.0), (0.7, 0.9, 3.0), (2.5, 0.5, 1.25)])
@pytest.mark.parametrize("name,pred,ref", CASES, ids=[c[0] for c in CASES])
def test_pooled_hd95_with_spacing_equals_medpy(name, pred, ref, spacing):
    expected = medpy_binary.hd95(pred, ref, voxelspacing=spacing)
    assert hd95_pooled(pred, ref, spacing) == pytest.approx(expected, abs=1e-9, rel=1e-12)


def _monai(pred, ref, spacing):
    yp = torch.as_tensor(np.stack([~pred, pred])[None].astype(np.float32))
    yt = torch.as_tensor(np.stack([~ref, ref])[None].astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(yp, yt, percentile=95, spacing=spacing)[0, 0].item()
        asd = compute_average_surface_distance(yp, yt, symmetric=True, spacing=spacing)[0, 0].item()
    return hd, asd


@pytest.mark.parametrize("spacing", [None, (0.7, 0.9, 3.0), (2.5, 0.5, 1.25)])
@pytest.mark.parametrize("name,pred,ref", CASES, ids=[c[0] for c in CASES])
def test_standard_equals_monai(name, pred, ref, spacing):
    hd, asd = _monai(pred, ref, spacing)
    ours = standard_case_metrics(pred, ref, spacing)
    # MONAI stores distances as float32: agreement to float32 precision
    np.testing.assert_allclose(ours["hd95"], hd, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(ours["assd"], asd, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(hd95_max_directed(pred, ref, spacing), hd, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(average_symmetric_surface_distance(pred, ref, spacing), asd, rtol=2e-6, atol=1e-6)
    assert ours["dice"] == pytest.approx(medpy_binary.dc(pred, ref))


def test_standard_2d_anisotropic_equals_monai():
    rng = np.random.default_rng(3)
    ref = _blobs((40, 31), 1, rng) > 0
    pred = ndimage.binary_erosion(ref) | (rng.random(ref.shape) > 0.99)
    hd, asd = _monai(pred, ref, (0.4, 1.7))
    ours = standard_case_metrics(pred, ref, (0.4, 1.7))
    np.testing.assert_allclose([ours["hd95"], ours["assd"]], [hd, asd], rtol=2e-6)
    assert hd95_pooled(pred, ref, (0.4, 1.7)) == pytest.approx(medpy_binary.hd95(pred, ref, voxelspacing=(0.4, 1.7)))


def test_empty_rules():
    z = np.zeros((6, 7, 8), bool)
    o = z.copy()
    o[2:4, 2:4, 2:4] = True
    # transunet: predicted but absent -> (1, 0); empty prediction -> (0, 0) (also when both are empty)
    assert transunet_case_metrics(o, z) == (1.0, 0.0)
    assert transunet_case_metrics(z, o) == (0.0, 0.0)
    assert transunet_case_metrics(z, z) == (0.0, 0.0)
    # standard: empty reference -> NaN; empty prediction of a present class -> Dice 0, infinite distances (as MONAI)
    assert all(np.isnan(v) for v in standard_case_metrics(o, z).values())
    assert all(np.isnan(v) for v in standard_case_metrics(z, z).values())
    miss = standard_case_metrics(z, o, (1.0, 2.0, 3.0))
    hd, asd = _monai(z, o, (1.0, 2.0, 3.0))
    assert miss["dice"] == 0.0 and np.isinf(miss["hd95"]) and np.isinf(miss["assd"]) and np.isinf(asd)
    # documented deviation: MONAI's HD95 is NaN here only because torch.quantile of all-inf distances is NaN
    # (its HD100 is inf); svseg keeps inf so that a missed organ is counted, not silently dropped.
    assert not np.isfinite(hd)
    with pytest.raises(ValueError, match="pred is empty"):
        surface_distances(z, o)
    with pytest.raises(ValueError, match="ref is empty"):
        surface_distances(o, z)
    assert dice(z, z) == 1.0  # medpy's convention for two empty masks


def test_crop_is_exact_and_validates():
    rng = np.random.default_rng(7)
    ref = _blobs((20, 18, 16), 1, rng) > 0
    pred = np.roll(ref, 2, axis=1)
    for sp in (None, (0.5, 1.0, 2.0)):
        a = surface_distances(pred, ref, sp, crop=True)
        b = surface_distances(pred, ref, sp, crop=False, method="edt")
        c = surface_distances(pred, ref, sp, crop=True, method="edt")
        for x, y in ((a, b), (c, b)):
            if sp is None:  # voxel units: bit-identical
                np.testing.assert_array_equal(x[0], y[0])
                np.testing.assert_array_equal(x[1], y[1])
            else:
                np.testing.assert_allclose(x[0], y[0], rtol=1e-14)
                np.testing.assert_allclose(x[1], y[1], rtol=1e-14)
    with pytest.raises(ValueError, match="method"):
        surface_distances(pred, ref, method="brute")
    with pytest.raises(ValueError, match="same shape"):
        surface_distances(pred, ref[:-1])
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(pred, ref, (1.0, 2.0))
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(pred, ref, (1.0, -2.0, 1.0))


@pytest.mark.parametrize("protocol", ["transunet", "standard"])
def test_evaluate_case_multiclass_matches_per_class_reference(protocol):
    rng = np.random.default_rng(11)
    ref = _blobs((24, 20, 12), 4, rng)
    pred = ref.copy()
    pred[ndimage.binary_dilation(ref == 2)] = 2  # class 2 grown
    pred[pred == 3] = 0  # class 3 missed entirely
    pred[0:2, 0:2, 0:2] = 5  # class 5 predicted, absent in ref
    names = ["background", "a", "b", "c", "d", "e"]
    spacing = (0.8, 0.8, 2.5)
    rows = evaluate_case(torch.as_tensor(pred)[None], ref, names, spacing=spacing, protocol=protocol, case="c1")
    assert [r["class"] for r in rows] == names[1:]
    assert list(rows[0])[:4] == ["case", "class", "dice", "hd95"]
    for r in rows:
        lab = names.index(r["class"])
        p, g = pred == lab, ref == lab
        assert r["pred_voxels"] == p.sum() and r["ref_voxels"] == g.sum()
        if protocol == "transunet":
            d, h = _medpy_transunet(p, g)
            assert abs(r["dice"] - d) < 1e-6 and abs(r["hd95"] - h) < 1e-6
        else:
            if not g.any():
                assert np.isnan(r["dice"]) and np.isnan(r["hd95"])
                continue
            if not p.any():  # missed class: inf (see test_empty_rules for MONAI's NaN)
                assert r["dice"] == 0.0 and np.isinf(r["hd95"])
                continue
            hd, asd = _monai(p, g, spacing)
            np.testing.assert_allclose([r["hd95"], r["assd"]], [hd, asd], rtol=2e-6)
    by = {r["class"]: r for r in rows}
    if protocol == "transunet":
        assert (by["c"]["dice"], by["c"]["hd95"]) == (0.0, 0.0)
        assert (by["e"]["dice"], by["e"]["hd95"]) == (1.0, 0.0)


def test_evaluate_case_rejects_bad_input():
    a = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="protocol"):
        evaluate_case(a, a, ["bg", "x"], protocol="nnunet")
    with pytest.raises(ValueError, match="same shape"):
        evaluate_case(a, a[:3], ["bg", "x"])
    with pytest.raises(ValueError, match="non-integer"):
        evaluate_case(a + 0.5, a, ["bg", "x"])
    with pytest.raises(ValueError, match="negative"):
        evaluate_case(a.astype(np.int8) - 1, a, ["bg", "x"])
