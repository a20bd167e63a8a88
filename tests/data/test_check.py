"""The shared input check (:mod:`svseg.data.check`) on each kind of bad file.

All files here are synthetic, written in the formats the check reads; the content does not matter,
only the format and the faults planted in it.
"""
from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from svseg.data import InputError, check_case, check_items, file_suffix

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _nii(path, array, affine=AFFINE):
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


@pytest.fixture()
def good(tmp_path):
    img = _nii(tmp_path / "case.nii.gz", np.random.default_rng(0).random((8, 7, 5)).astype(np.float32))
    lab = np.zeros((8, 7, 5), np.uint8)
    lab[2:5, 2:5, 1:3] = 2
    return img, _nii(tmp_path / "case_seg.nii.gz", lab)


def test_a_good_case_passes_and_is_summarised(good):
    img, lab = good
    summary = check_case(img, lab, num_classes=3, class_names=["bg", "a", "b"])
    assert summary == {"shape": [8, 7, 5], "channels": 1, "label_ids": [0, 2]}


@pytest.mark.parametrize("fault, message", [
    ("missing", "case.nii.gz: file does not exist"),
    ("empty", "case.nii.gz: file is empty (0 bytes)"),
    ("truncated", "case.nii.gz: truncated gzip stream"),
    ("garbage", "case.nii.gz: cannot be read"),
    ("nan", "case.nii.gz: holds NaN or inf values (1 voxels)"),
    ("4d", "case.nii.gz: has 2 channel(s), the network expects 1"),
    ("2d", "case.nii.gz: is 2D"),
])
def test_bad_images_name_the_file_and_the_problem(tmp_path, good, fault, message):
    img, _ = good
    if fault == "missing":
        img.unlink()
    elif fault == "empty":
        img.write_bytes(b"")
    elif fault == "truncated":
        data = img.read_bytes()
        img.write_bytes(data[: len(data) // 2])
    elif fault == "garbage":
        img.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    elif fault == "nan":
        arr = np.ones((8, 7, 5), np.float32)
        arr[1, 1, 1] = np.nan
        _nii(img, arr)
    elif fault == "4d":
        _nii(img, np.ones((8, 7, 5, 2), np.float32))
    elif fault == "2d":
        _nii(img, np.ones((8, 7), np.float32), np.eye(4))
    with pytest.raises(InputError) as e:
        check_case(img, in_channels=1)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fault, message", [
    ("ids", "case_seg.nii.gz: label ids [3, 7] are not in the class list 0..2 (bg, a, b)"),
    ("shape", "case_seg.nii.gz: label shape (8, 7, 4) (channels 1) differs from the image shape (8, 7, 5) of case.nii.gz"),
    ("affine", "case_seg.nii.gz: label affine differs from the affine of case.nii.gz"),
    ("float", "case_seg.nii.gz: label holds non-integer values"),
])
def test_bad_labels_name_the_file_and_the_problem(good, fault, message):
    img, lab = good
    arr = np.zeros((8, 7, 5), np.float32)
    if fault == "ids":
        arr[0, 0, 0], arr[1, 1, 1] = 3, 7
        _nii(lab, arr.astype(np.uint8))
    elif fault == "shape":
        _nii(lab, np.zeros((8, 7, 4), np.uint8))
    elif fault == "affine":
        _nii(lab, arr.astype(np.uint8), np.diag([1.0, 1.0, 3.0, 1.0]))
    elif fault == "float":
        arr[0, 0, 0] = 0.5
        _nii(lab, arr)
    with pytest.raises(InputError) as e:
        check_case(img, lab, num_classes=3, class_names=["bg", "a", "b"])
    assert str(e.value) == message


def test_a_file_type_the_data_set_does_not_declare_is_refused(tmp_path, good):
    img, lab = good
    png = tmp_path / "slice.png"
    Image.fromarray(np.zeros((8, 7), np.uint8)).save(png)
    assert file_suffix(png) == ".png" and file_suffix("a/b.npy.h5::label") == ".npy.h5"
    with pytest.raises(InputError, match=r"^slice.png: file type .png is not one the data set declares \(.nii.gz\)$"):
        check_items([{"image": str(img), "label": str(lab)}, {"image": str(png), "label": str(lab)}],
                    num_classes=3, suffixes={".nii.gz"}, cache_path=tmp_path / "cache.json")


def test_results_are_cached_by_size_and_mtime(tmp_path, good, monkeypatch):
    img, lab = good
    cache = tmp_path / "cache.json"
    items = [{"image": str(img), "label": str(lab)}]
    assert check_items(items, num_classes=3, cache_path=cache)[0]["label_ids"] == [0, 2]
    assert len(json.loads(cache.read_text())["cases"]) == 1

    calls = []
    import svseg.data.check as check_module

    monkeypatch.setattr(check_module, "check_case", lambda *a, **k: calls.append(a) or {})
    check_items(items, num_classes=3, cache_path=cache)
    assert calls == []  # unchanged files: answered from the cache
    bad = np.zeros((8, 7, 5), np.uint8)
    bad[0, 0, 0] = 9
    _nii(lab, bad)  # a changed file (size or mtime) is checked again
    monkeypatch.undo()
    with pytest.raises(InputError, match="label ids \\[9\\]"):
        check_items(items, num_classes=3, cache_path=cache)
