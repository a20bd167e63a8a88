"""Per-case statistics of a label map (:mod:`svseg.inference.statistics`), on synthetic label maps whose
volumes and components are counted by hand here (volume = voxel count x voxel volume)."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from svseg.inference import label_statistics, write_statistics
from svseg.inference.writer import write_label_png

CLASSES = ["background", "liver", "tumour", "vessel"]


def _rotation_z(degrees):
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _synthetic_map():
    """Synthetic 10 x 10 x 10 label map: class 1 is a 3x3x3 cube with one voxel touching its corner only
    diagonally (one component with full connectivity) plus a separate 2x2x2 cube: 36 voxels, 2
    components; class 2 a 2x3x2 slab: 12 voxels, 1 component; class 3 is absent."""
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[1:4, 1:4, 1:4] = 1
    lab[4, 4, 4] = 1
    lab[7:9, 0:2, 0:2] = 1
    lab[0:2, 6:9, 6:8] = 2
    return lab


def test_volumes_and_components_match_a_hand_count(tmp_path):
    spacing = (0.5, 0.8, 2.0)  # voxel volume 0.8 mm3
    affine = np.eye(4)
    affine[:3, :3] = _rotation_z(30) @ np.diag(spacing)  # oblique: the spacing is the columns' length
    img = nib.Nifti1Image(_synthetic_map(), affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(tmp_path / "case7_seg.nii.gz"))
    path = write_statistics(tmp_path / "case7_seg.nii.gz", class_names=CLASSES)
    assert path == tmp_path / "case7_statistics.json"
    doc = json.loads(path.read_text())
    assert doc["case"] == "case7" and doc["prediction"] == "case7_seg.nii.gz" and doc["unit"] == "mm3"
    assert doc["spacing"] == pytest.approx(list(spacing)) and doc["voxel_volume_mm3"] == pytest.approx(0.8)
    assert list(doc["classes"]) == ["liver", "tumour", "vessel"]
    liver, tumour, vessel = (doc["classes"][n] for n in ("liver", "tumour", "vessel"))
    assert liver == {"label": 1, "voxels": 36, "volume_mm3": pytest.approx(36 * 0.8), "components": 2}
    assert tumour == {"label": 2, "voxels": 12, "volume_mm3": pytest.approx(12 * 0.8), "components": 1}
    assert vessel == {"label": 3, "voxels": 0, "volume_mm3": 0.0, "components": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case7_seg.nii.gz", "case7_statistics.json"]  # no temp file


def test_header_units_and_2d_maps(tmp_path):
    lab = _synthetic_map()
    img = nib.Nifti1Image(lab, np.diag([0.5, 0.8, 2.0, 1.0]))
    img.header.set_xyzt_units("micron")
    nib.save(img, str(tmp_path / "um_seg.nii.gz"))
    doc = json.loads(write_statistics(tmp_path / "um_seg.nii.gz").read_text())
    assert doc["classes"]["label_1"]["volume_mm3"] == pytest.approx(36 * 0.8e-9)  # no names: label_<id>
    assert "micron" in doc["spacing_source"]
    # a 2D NIfTI: area in mm2
    nib.save(nib.Nifti1Image(lab[:, :, 1], np.diag([0.5, 0.25, 1.0, 1.0])), str(tmp_path / "flat_seg.nii.gz"))
    doc = json.loads(write_statistics(tmp_path / "flat_seg.nii.gz", class_names=CLASSES).read_text())
    assert doc["unit"] == "mm2" and doc["pixel_area_mm2"] == pytest.approx(0.125)
    assert doc["classes"]["liver"] == {"label": 1, "voxels": 9 + 4, "area_mm2": pytest.approx(13 * 0.125),
                                       "components": 2}
    # a PNG label map has no pixel spacing: areas in pixels, and the file says so
    write_label_png(lab[:, :, 1], tmp_path / "photo_seg.png")
    doc = json.loads(write_statistics(tmp_path / "photo_seg.png", class_names=CLASSES).read_text())
    assert doc["unit"] == "px" and doc["spacing"] == [1.0, 1.0] and doc["spacing_source"].startswith("none")
    assert doc["classes"]["liver"] == {"label": 1, "voxels": 13, "area_px": 13.0, "components": 2}
    assert doc["classes"]["tumour"]["components"] == 0


def test_pure_function_and_bad_maps(tmp_path):
    lab = _synthetic_map()
    stats = label_statistics(lab, None, CLASSES[:2])  # a label beyond the names gets label_<id>
    assert stats["classes"]["liver"]["volume_voxels"] == 36
    assert stats["classes"]["label_2"] == {"label": 2, "voxels": 12, "volume_voxels": 12.0, "components": 1}
    with pytest.raises(ValueError, match="integer label ids"):
        label_statistics(lab + 0.5)
    with pytest.raises(ValueError, match="spacing has 2 values"):
        label_statistics(lab, (1.0, 1.0))
    # a failed computation leaves an existing statistics file as it was
    nib.save(nib.Nifti1Image(lab.astype(np.float32) + 0.5, np.eye(4)), str(tmp_path / "bad_seg.nii.gz"))
    (tmp_path / "bad_statistics.json").write_text('{"old": true}')
    with pytest.raises(ValueError, match="integer label ids"):
        write_statistics(tmp_path / "bad_seg.nii.gz")
    assert json.loads((tmp_path / "bad_statistics.json").read_text()) == {"old": True}
