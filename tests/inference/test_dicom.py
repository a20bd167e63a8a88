"""DICOM series input of ``svseg predict`` (:mod:`svseg.io.dicom`, :func:`svseg.bundle.predict`).

Real data: a block of the MNI152 2009a T1 that ships inside nilearn (its stored 8-bit values), written
once as NIfTI and once as a DICOM series. The geometry of both is synthetic (an oblique, anisotropic
affine chosen here, so that a wrong LPS/RAS or row/column convention shows), and so are the DICOM
headers: this test computes each slice's ImagePositionPatient / ImageOrientationPatient from the
NIfTI affine itself (RAS -> LPS) and SimpleITK writes the files. The network is a small seeded,
untrained MONAI UNet swapped into the msa2net bundle by override: its label map is not trivial, so
the same labels voxel by voxel from both inputs show that the series was read as the same volume.
The error-case series are small synthetic arrays, stated where they are made.
"""
from __future__ import annotations

import json
import locale
from contextlib import contextmanager

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from svseg.bundle import input_cases, input_files, predict
from svseg.cli import main
from svseg.errors import InputError
from svseg.io import dicom_to_nifti, is_dicom_folder, read_dicom_series
from tests.inference.small_model import DEMO_CLASSES as CLASSES
from tests.inference.small_model import SMALL_NET as NET
from tests.inference.small_model import save_small_weights


def _rotation(axis, degrees):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.deg2rad(degrees)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


#: synthetic oblique geometry: 0.9 x 1.1 x 1.6 mm voxels, rotated 20 degrees about an oblique axis
AFFINE = np.eye(4)
AFFINE[:3, :3] = _rotation([1, 2, 3], 20) @ np.diag([0.9, 1.1, 1.6])
AFFINE[:3, 3] = [-40.0, 25.0, 12.5]


@contextmanager
def _locale_kept():
    """ITK's GDCM writer sets the process locale to "C" (Python's default text encoding becomes ASCII for every
    later test in the process); put it back. svseg's reader leaves the locale alone."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def write_series(volume, affine, folder, series_uid, description="T1 (synthetic header)", first=0):
    with _locale_kept():
        return _write_series(volume, affine, folder, series_uid, description, first)


def _write_series(volume, affine, folder, series_uid, description, first):
    """Write ``volume`` (nibabel's ``(i, j, k)`` order, RAS ``affine``) as a DICOM series, one file per ``k``.

    The headers are computed from the affine here, independently of svseg's reader: DICOM's patient
    frame is LPS; a slice's rows run along ``i`` (ImageOrientationPatient's first vector) and its
    columns along ``j``, so the slice array (rows, columns) is ``volume[:, :, k].T``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    along_i, along_j = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.KeepOriginalImageUIDOn()
    for k in range(volume.shape[2]):
        s = sitk.GetImageFromArray(np.ascontiguousarray(volume[:, :, k].T).astype(np.int16))
        s.SetSpacing((float(spacing[0]), float(spacing[1])))
        position = lps @ np.array([0.0, 0.0, k, 1.0])
        for tag, value in {
            "0008|0060": "MR", "0008|103e": description, "0020|000d": series_uid + ".0", "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{first + k + 1}", "0020|0013": str(first + k + 1),
            "0020|0037": "\\".join(f"{v:.9f}" for v in (*along_i, *along_j)),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position[:3]),
        }.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{first + k:04d}"))  # no ending, as scanners name them
        writer.Execute(s)
    return folder


@pytest.fixture(scope="module")
def real_block():
    """A 64 x 72 x 10 block of the real MNI152 T1 as its 8-bit grey values (nilearn gives them / 255), which
    a DICOM series stores exactly."""
    from nilearn import datasets

    t1 = np.asarray(datasets.load_mni152_template(resolution=1).dataobj, dtype=np.float64) * 255
    block = np.ascontiguousarray(t1[66:130, 80:152, 85:95])
    assert np.abs(block - np.rint(block)).max() < 1e-3
    return np.rint(block).astype(np.int16)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_small_weights(tmp_path_factory.mktemp("weights"))


def _labels(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_series_is_read_with_the_nifti_geometry(real_block, tmp_path):
    """The reader's NIfTI has the values and the RAS affine of the volume the series was written from."""
    series = write_series(real_block, AFFINE, tmp_path / "t1", "1.2.826.0.1.3680043.8.498.11")
    assert is_dicom_folder(series) and not is_dicom_folder(tmp_path)
    before = locale.setlocale(locale.LC_ALL)
    out = dicom_to_nifti(series, tmp_path / "t1.nii.gz")
    assert locale.setlocale(locale.LC_ALL) == before  # reading leaves the process locale (text encoding) alone
    img = nib.load(str(out))
    assert img.shape == real_block.shape
    np.testing.assert_allclose(img.affine, AFFINE, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj), real_block)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1", "t1.nii.gz"]  # no temporary file left


def test_dicom_series_predicts_the_labels_of_the_nifti(real_block, weights, tmp_path):
    """A folder holding a NIfTI and a DICOM series folder of the same real volume: same labels, same
    geometry, same statistics; the series folder alone as --input names its case after the folder."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    nib.save(nib.Nifti1Image(real_block, AFFINE), str(inputs / "t1.nii.gz"))
    write_series(real_block, AFFINE, inputs / "t1_dicom", "1.2.826.0.1.3680043.8.498.12")
    common = {"checkpoint": weights, "device": "cpu", "overrides": {"network_def": NET}}
    written = predict("msa2net", inputs, tmp_path / "out", **common)
    assert [p.name for p in written] == ["t1_seg.nii.gz", "t1_dicom_seg.nii.gz"]
    from_nifti, from_dicom = (nib.load(str(p)) for p in written)
    a, b = np.asarray(from_dicom.dataobj), np.asarray(from_nifti.dataobj)
    counts = np.bincount(b.ravel(), minlength=3)
    print(f"labels per class (NIfTI input): {counts.tolist()}; DICOM == NIfTI on {(a == b).mean():.6f} of voxels")
    assert (counts > 0).sum() >= 2, "the seeded network should give a non-trivial label map"
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(from_dicom.affine, AFFINE, atol=1e-4)
    stats = [json.loads((tmp_path / "out" / f"{c}_statistics.json").read_text()) for c in ("t1_dicom", "t1")]
    assert list(stats[0]["classes"]) == CLASSES[1:]
    for name in CLASSES[1:]:
        assert stats[0]["classes"][name]["voxels"] == stats[1]["classes"][name]["voxels"]
        assert stats[0]["classes"][name]["volume_mm3"] == pytest.approx(stats[1]["classes"][name]["volume_mm3"], rel=1e-5)
    # the series folder itself as the input, through the CLI
    assert main(["predict", "--bundle", "msa2net", "--input", str(inputs / "t1_dicom"), "--output",
                 str(tmp_path / "single"), "--checkpoint", str(weights), "--device", "cpu",
                 "--override", "network_def=" + json.dumps(NET)]) == 0
    assert sorted(p.name for p in (tmp_path / "single").iterdir()) == ["t1_dicom_seg.nii.gz",
                                                                      "t1_dicom_statistics.json"]
    np.testing.assert_array_equal(_labels(tmp_path / "single" / "t1_dicom_seg.nii.gz"), b)


def _small_series(folder, uid, n=5, skip=(), first=0):
    """A synthetic 6 x 5 x ``n`` series (random values), slices ``skip`` left out."""
    vol = np.random.default_rng(0).integers(0, 200, size=(6, 5, n)).astype(np.int16)
    write_series(vol, np.diag([0.8, 0.7, 2.0, 1.0]), folder, uid, first=first)
    for k in skip:
        (folder / f"IM{first + k:04d}").unlink()
    return folder


def test_a_folder_with_two_series_is_refused_with_no_output(weights, tmp_path, capsys):
    series = _small_series(tmp_path / "in" / "mixed", "1.2.3.4.100")
    _small_series(series, "1.2.3.4.200", first=100)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as e:
        predict("msa2net", tmp_path / "in", out, checkpoint=weights, device="cpu", overrides={"network_def": NET})
    message = str(e.value)
    assert str(series) in message and "1.2.3.4.100" in message and "1.2.3.4.200" in message
    assert "2 DICOM series" in message and "\n" not in message
    assert not out.exists()
    assert main(["predict", "--bundle", "msa2net", "--input", str(series), "--output", str(out),
                 "--checkpoint", str(weights), "--device", "cpu", "--override", "network_def=" + json.dumps(NET)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1.2.3.4.100" in err[0] and "1.2.3.4.200" in err[0]
    assert not out.exists()


def test_bad_series_folders_are_refused_in_one_line(tmp_path):
    # a missing slice
    gap = _small_series(tmp_path / "gap", "1.2.3.4.300", n=6, skip=(3,))
    with pytest.raises(ValueError, match="not evenly spaced.*a slice is missing") as e:
        read_dicom_series(gap)
    assert str(gap) in str(e.value)
    # a stray file among the slices
    junk = _small_series(tmp_path / "junk", "1.2.3.4.400")
    (junk / "notes.txt").write_text("not a slice")
    (junk / ".DS_Store").write_bytes(b"\0" * 16)  # hidden files are ignored
    with pytest.raises(ValueError, match=r"junk: notes\.txt is not a slice of DICOM series 1\.2\.3\.4\.400"):
        read_dicom_series(junk)
    # slices that do not stack (another size)
    mixed = _small_series(tmp_path / "mixed", "1.2.3.4.500", n=3)
    s = sitk.GetImageFromArray(np.zeros((4, 4), np.int16))
    for tag, value in {"0020|000e": "1.2.3.4.500", "0020|0037": "1\\0\\0\\0\\1\\0", "0020|0032": "0\\0\\6",
                       "0008|0018": "1.2.3.4.500.9"}.items():
        s.SetMetaData(tag, value)
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(mixed / "IM0099"))
    with _locale_kept():
        writer.Execute(s)
    with pytest.raises(ValueError, match=r"mixed: the 4 slices of DICOM series 1\.2\.3\.4\.500 do not stack into one "
                                         r"volume \(ImageIO returns IO region that does not fully contain"):
        read_dicom_series(mixed)
    # a folder with no series, a single DICOM file as input
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no readable DICOM image series"):
        read_dicom_series(empty)
    with pytest.raises(InputError, match="one DICOM file; pass the folder of its series"):
        input_files(gap / "IM0000")
    # nothing was written into the series folders
    assert sorted(p.name for p in junk.iterdir()) == [".DS_Store", "IM0000", "IM0001", "IM0002", "IM0003", "IM0004",
                                                      "notes.txt"]


def test_input_files_lists_images_and_series_folders(tmp_path):
    """Synthetic files: a folder's inputs are its image files and its DICOM series subfolders, by name;
    a data set's image subfolders are not series; a series folder and a file of one case id are refused."""
    _small_series(tmp_path / "b_series", "1.2.3.4.600")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), str(tmp_path / "a.nii.gz"))
    (tmp_path / "imagesTs").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), np.eye(4)), str(tmp_path / "imagesTs" / "c.nii.gz"))
    files = input_files(tmp_path)
    assert [f.name for f in files] == ["a.nii.gz", "b_series"]
    assert input_cases(files) == [("a", str(tmp_path / "a.nii.gz")), ("b_series", str(tmp_path / "b_series"))]
    assert input_files(tmp_path / "b_series") == [tmp_path / "b_series"]
    _small_series(tmp_path / "a", "1.2.3.4.700")
    with pytest.raises(InputError, match=r"^a(\.nii\.gz)?: has the case id 'a' of a"):
        input_cases(input_files(tmp_path))
