"""Tests of :mod:`svseg.evaluation.labels`: class names, label arrays, boxes (synthetic arrays)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from svseg.evaluation.labels import (
    class_name_list,
    label_boxes,
    label_pair,
    load_label_volume,
    to_label_array,
    union_box,
)


def test_class_name_list_forms():
    assert class_name_list(None, 2) == ["background", "class_1", "class_2"]
    assert class_name_list({2: "liver"}, 0) == ["background", "class_1", "liver"]
    assert class_name_list(("bg", "a"), 5) == ["bg", "a"]
    for bad, msg in (("liver", "single string"), (["bg"], "at least one class"), ({}, "empty"), ({-1: "x"}, "negative")):
        with pytest.raises(ValueError, match=msg):
            class_name_list(bad, 1)


def test_to_label_array_channels_dtypes_and_errors():
    onehot = np.zeros((3, 4, 4, 2), np.float32)
    onehot[2, 1, 1, 0] = 1.0
    onehot[0] = 0.5
    labels = to_label_array(onehot, "pred")  # K > 1 channels: argmax
    assert labels.shape == (4, 4, 2) and labels[1, 1, 0] == 2 and labels.dtype == np.uint8
    assert to_label_array(torch.ones((1, 3, 3, 2), dtype=torch.float64), "ref").shape == (3, 3, 2)  # channel of 1 dropped
    assert to_label_array(np.array([[True, False]]), "m").tolist() == [[1, 0]]
    assert to_label_array(np.array([[300, 0]]), "big").dtype == np.uint16
    for bad, msg in ((np.array([[0.5]]), "non-integer"), (np.array([[np.nan]]), "non-finite"), (np.array([[-1]]), "negative"),
                     (np.zeros(4), "2D or 3D"), (np.array([["a"]]), "dtype")):
        with pytest.raises(ValueError, match=msg):
            to_label_array(bad, "x")


def test_label_pair_and_boxes():
    p = np.zeros((6, 6), np.uint8)
    r = np.zeros_like(p)
    p[1:3, 1:3] = 1
    r[2:5, 2:4] = 1
    r[5, 5] = 3
    pp, rr, names = label_pair(p, r, None)
    assert names == ["background", "class_1", "class_2", "class_3"]
    boxes = label_boxes(pp, rr, 3)
    assert union_box(boxes[0], p.shape) == (slice(1, 5), slice(1, 4))
    assert union_box(boxes[0], p.shape, margin=1) == (slice(0, 6), slice(0, 5))
    assert boxes[1] == (None, None) and union_box(boxes[1], p.shape) is None
    assert union_box(boxes[2], p.shape, margin=2) == (slice(3, 6), slice(3, 6))  # clipped to the array
    with pytest.raises(ValueError, match="same shape"):
        label_pair(p, r[:5], None)


def test_load_label_volume_keeps_orientation_and_spacing(tmp_path):
    arr = np.zeros((5, 4, 3, 1), np.float32)  # float labels with a trailing singleton axis
    arr[1, 2, 0, 0] = 2
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(arr, affine), str(tmp_path / "l.nii.gz"))
    labels, aff, spacing = load_label_volume(tmp_path / "l.nii.gz")
    assert labels.shape == (5, 4, 3) and labels.dtype == np.uint8 and labels[1, 2, 0] == 2
    np.testing.assert_allclose(aff, affine)
    assert spacing == pytest.approx((0.7, 0.8, 2.5))
    with pytest.raises(FileNotFoundError):
        load_label_volume(tmp_path / "missing.nii.gz")
