"""Tests of the Synapse / LiTS / ACDC converters on SYNTHETIC files in the published layouts.

The inputs come from ``tests/data/synthetic.py``: random volumes written with exactly the
published file names, folders, dtypes and label sets (the real data cannot be downloaded here).
"""

from __future__ import annotations

import gzip
import json
import shutil

import h5py
import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImage

from svseg.data import convert
from svseg.data.datalist import datalist_for
from svseg.data.readers import H5Reader
from svseg.data.specs import SYNAPSE_BTCV_TO_TRANSUNET, get_dataset
from svseg.data.transforms import apply_intensity, ct_window

from . import synthetic


def _nii(path):
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def _no_leftovers(parent, name):
    assert not (parent / name).exists(), "a failed conversion left an output folder"
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")], "temporary files left behind"


def _converted_run(dataset, source, write):
    """A module-scoped fixture named ``<dataset>_run``: ``write`` puts synthetic ``dataset`` files into
    ``<tmp>/<source>`` and the folder above is converted. The fixture gives the source folder, the
    truth that ``write`` returned and the converted output folder.
    """

    @pytest.fixture(scope="module", name=f"{dataset}_run")
    def run(tmp_path_factory):
        root = tmp_path_factory.mktemp(dataset)
        src = root / source
        truth = write(src)
        out = convert.prepare(dataset, src.parent, root / "out", progress=False)
        return src, truth, out

    return run


# ------------------------------------------------------------------------------------------ Synapse


synapse_run = _converted_run("synapse", "RawData/Training", synthetic.write_btcv)


def test_synapse_split_and_layout(synapse_run):
    _, truth, out = synapse_run
    spec = get_dataset("synapse")
    meta = json.loads((out / "dataset.json").read_text())
    assert [e["case"] for e in meta["training"]] == list(spec.split("training"))
    assert [e["case"] for e in meta["test"]] == list(spec.split("test")) and meta["validation"] == []
    assert meta["labels"]["1"] == "aorta" and meta["labels"]["8"] == "stomach"
    assert (out / "lists" / "test_vol.txt").read_text().split() == list(spec.split("test"))
    train = (out / "lists" / "train.txt").read_text().split()
    assert len(train) == 18 * 3 and train[0] == "case0005_slice000" and train[-1] == "case0040_slice002"
    assert sorted(p.stem for p in (out / "train_npz").glob("*.npz")) == sorted(train)
    assert sorted(p.name for p in (out / "test_vol_h5").iterdir()) == sorted(f"{c}.npy.h5" for c in spec.split("test"))
    assert json.loads((out / convert.STAMP_NAME).read_text())["dataset"] == "synapse"


def test_synapse_round_trip_values(synapse_run):
    _, truth, out = synapse_run
    lut = np.zeros(14, np.int64)
    for s, d in SYNAPSE_BTCV_TO_TRANSUNET.items():
        lut[s] = d
    # test case: NIfTI == source (windowed, remapped, same affine) == H5 volume
    img, lab, aff = truth["case0008"]
    nimg, naff = _nii(out / "imagesTs" / "case0008.nii.gz")
    nlab, _ = _nii(out / "labelsTs" / "case0008.nii.gz")
    np.testing.assert_allclose(naff, aff, atol=1e-5)
    np.testing.assert_allclose(nimg, ct_window(img, -125, 275), atol=1e-6)
    np.testing.assert_array_equal(nlab, lut[lab])
    h5 = out / "test_vol_h5" / "case0008.npy.h5"
    with h5py.File(h5) as f:
        assert f["image"].shape == (3, 12, 10)  # (D, H, W)
        np.testing.assert_allclose(f.attrs["spacing"], np.abs(np.diag(aff)[:3]), atol=1e-6)
    vol = LoadImage(image_only=True, reader=H5Reader())(f"{h5}::image")
    np.testing.assert_array_equal(vol.numpy(), nimg)
    np.testing.assert_allclose(vol.affine.numpy(), aff, atol=1e-5)
    seg = LoadImage(image_only=True, reader=H5Reader())(f"{h5}::label")
    np.testing.assert_array_equal(seg.numpy(), nlab)
    # training case: npz slices stacked == NIfTI volume
    nimg, _ = _nii(out / "imagesTr" / "case0005.nii.gz")
    nlab, _ = _nii(out / "labelsTr" / "case0005.nii.gz")
    stack_i, stack_l = [], []
    for k in range(3):
        with np.load(out / "train_npz" / f"case0005_slice{k:03d}.npz") as z:
            assert z["image"].dtype == np.float32 and z["image"].shape == (12, 10)
            stack_i.append(z["image"].T)
            stack_l.append(z["label"].T)
    np.testing.assert_array_equal(np.stack(stack_i, -1), nimg)
    np.testing.assert_array_equal(np.stack(stack_l, -1), nlab)
    assert set(np.unique(nlab)) <= set(range(9))


def test_synapse_transunet_folder_as_is(synapse_run, tmp_path):
    _, _, out = synapse_run
    tu = tmp_path / "Synapse"
    for sub in ("train_npz", "test_vol_h5"):
        shutil.copytree(out / sub, tu / sub)
    shutil.copytree(out / "lists", tu / "lists")
    got = convert.prepare("synapse", tu, progress=False)
    assert got == tu and (tu / "dataset.json").is_file()
    test = datalist_for("synapse", tu, "test")
    assert [t["case"] for t in test] == list(get_dataset("synapse").split("test"))
    assert len(datalist_for("synapse", tu, "training")) == 54
    # a truncated H5 volume is reported by name and no dataset.json is written
    (tu / "dataset.json").unlink()
    bad = tu / "test_vol_h5" / "case0022.npy.h5"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(convert.ConversionError, match="case0022.npy.h5.*truncated or corrupt"):
        convert.prepare("synapse", tu, progress=False)
    assert not (tu / "dataset.json").exists()


def _btcv_one(tmp_path, **kw):
    src = tmp_path / "Training"
    synthetic.write_btcv(src, ids=(1, 2), **kw)
    return src


def _break(kind, src):
    img_p, lab_p = src / "img" / "img0002.nii.gz", src / "label" / "label0002.nii.gz"
    img, aff = _nii(img_p)
    lab, _ = _nii(lab_p)
    if kind == "missing":
        lab_p.unlink()
    elif kind == "corrupt_gzip":
        raw = img_p.read_bytes()
        img_p.write_bytes(raw[: len(raw) // 2])
    elif kind == "not_gzip":
        img_p.write_bytes(gzip.compress(b"hello")[:-6] + b"garbage")
    elif kind == "shape":
        synthetic.save(lab_p, lab[:, :-1], aff)
    elif kind == "affine":
        aff2 = aff.copy()
        aff2[0, 3] += 5.0
        synthetic.save(lab_p, lab, aff2)
    elif kind == "label_ids":
        lab = lab.copy()
        lab[0, 0, 0] = 20
        synthetic.save(lab_p, lab, aff)
    elif kind == "nan":
        f = img.astype(np.float32)
        f[1, 1, 1] = np.nan
        f[2, 2, 2] = np.inf
        synthetic.save(img_p, f, aff)
    elif kind == "2d":
        synthetic.save(img_p, img[:, :, 0], aff)
        synthetic.save(lab_p, lab[:, :, 0], aff)
    elif kind == "empty":
        synthetic.save(lab_p, np.zeros_like(lab), aff)


BAD = [
    ("missing", FileNotFoundError, r"label0002.nii.gz: label file not found"),
    ("corrupt_gzip", convert.ConversionError, r"img0002.nii.gz: cannot read the image \(corrupt or truncated"),
    ("not_gzip", convert.ConversionError, r"img0002.nii.gz: cannot read the image"),
    ("shape", convert.ConversionError, r"label0002.nii.gz: label shape \(10, 11, 3\) does not match image img0002.nii.gz"),
    ("affine", convert.ConversionError, r"label0002.nii.gz: label affine differs .*max difference 5"),
    ("label_ids", convert.ConversionError, r"label0002.nii.gz: label ids \[20\] are outside the dataset's set"),
    ("nan", convert.ConversionError, r"img0002.nii.gz: image holds 2 NaN/Inf voxels"),
    ("2d", convert.ConversionError, r"img0002.nii.gz: expected a 3D image volume, got an array of shape \(10, 12\)"),
    ("empty", convert.ConversionError, r"label0002.nii.gz: the label volume is empty"),
]


@pytest.mark.parametrize("kind,exc,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_synapse_input_names_file_and_leaves_no_output(tmp_path, kind, exc, msg):
    src = _btcv_one(tmp_path)
    _break(kind, src)
    # case0001 converts fine first, then case0002 fails: nothing may remain
    with pytest.raises(exc, match=msg):
        convert.convert_synapse(src, tmp_path / "out", cases=["case0001", "case0002"], progress=False)
    _no_leftovers(tmp_path, "out")


def test_missing_official_case_and_existing_output(tmp_path):
    src = _btcv_one(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"Training: img/img0005.nii.gz not found \(case case0005 of the training split; 18 missing"):
        convert.convert_synapse(src, tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="not in the published split"):
        convert.convert_synapse(src, tmp_path / "out", cases=["case0099"], progress=False)
    out = convert.convert_synapse(src, tmp_path / "out", cases=["case0001"], progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        convert.convert_synapse(src, out, cases=["case0001"], progress=False)
    convert.convert_synapse(src, out, cases=["case0002"], overwrite=True, progress=False)
    assert [e["case"] for e in datalist_for("synapse", out, "test")] == ["case0002"]
    _no_leftovers(tmp_path, "nothing")


# ------------------------------------------------------------------------------------------ LiTS


@pytest.fixture(scope="module")
def lits_src(tmp_path_factory):
    root = tmp_path_factory.mktemp("lits")
    return root / "LiTS", synthetic.write_lits(root / "LiTS")


def test_lits_full_split_and_round_trip(lits_src, tmp_path):
    src, truth = lits_src
    out = convert.prepare("lits", src, tmp_path / "lits", progress=False)
    spec = get_dataset("lits")
    for split in ("training", "validation", "test"):
        assert [e["case"] for e in datalist_for("lits", out, split)] == list(spec.split(split))
    img, lab, aff = truth["volume-120"]
    nimg, naff = _nii(out / "imagesTs" / "volume-120.nii.gz")
    nlab, _ = _nii(out / "labelsTs" / "volume-120.nii.gz")
    np.testing.assert_allclose(nimg, ct_window(img, -250, 250), atol=1e-6)
    np.testing.assert_array_equal(nlab, lab)
    np.testing.assert_allclose(naff, aff)
    assert (out / "imagesTr" / "volume-110.nii.gz").is_file() and not (out / "train_npz").exists()


def test_lits_kfold_window_and_slice_cache(lits_src, tmp_path):
    src, truth = lits_src
    cases = ["volume-0", "volume-5", "volume-104", "volume-130"]
    out = convert.prepare("lits", src, tmp_path / "lits", cases=cases, window=(-100, 100), fold=0, n_folds=5, slices=True, progress=False)
    # fold 0 of the 118 non-test volumes in natural order holds volume-0 and volume-5 (i % 5 == 0)
    assert [e["case"] for e in datalist_for("lits", out, "validation")] == ["volume-0", "volume-5"]
    assert [e["case"] for e in datalist_for("lits", out, "training")] == ["volume-104"]
    assert [e["case"] for e in datalist_for("lits", out, "test")] == ["volume-130"]
    nimg, _ = _nii(out / "imagesTr" / "volume-104.nii.gz")
    np.testing.assert_allclose(nimg, ct_window(truth["volume-104"][0], -100, 100), atol=1e-6)
    assert (out / "lists" / "train.txt").read_text().split() == [f"volume-104_slice{k:03d}" for k in range(3)]
    vol = LoadImage(image_only=True, reader=H5Reader())(f"{out}/test_vol_h5/volume-130.npy.h5::label")
    np.testing.assert_array_equal(vol.numpy(), truth["volume-130"][1])


def test_lits_bad_label_id(tmp_path):
    src = tmp_path / "LiTS"
    synthetic.write_lits(src, ids=(0,))
    lab, aff = _nii(src / "Training Batch 1" / "segmentation-0.nii")
    lab = lab.copy()
    lab[0, 0, 0] = 3
    synthetic.save(src / "Training Batch 1" / "segmentation-0.nii", lab, aff)
    with pytest.raises(convert.ConversionError, match=r"segmentation-0.nii: label ids \[3\] are outside the dataset's set \[0, 1, 2\]"):
        convert.convert_lits(src, tmp_path / "out", cases=["volume-0"], progress=False)
    _no_leftovers(tmp_path, "out")


# ------------------------------------------------------------------------------------------ ACDC


acdc_run = _converted_run("acdc", "database/training", synthetic.write_acdc)


def test_acdc_split_and_layout(acdc_run):
    _, truth, out = acdc_run
    spec = get_dataset("acdc")
    for split in ("training", "validation", "test"):
        got = [e["case"] for e in datalist_for("acdc", out, split)]
        assert got == [f"{p}_{ph}" for p in spec.split(split) for ph in ("ED", "ES")]
    assert len((out / "lists" / "train.txt").read_text().split()) == 70 * 2 * 3
    assert (out / "lists" / "test_vol.txt").read_text().split()[:2] == ["patient002_ED", "patient002_ES"]
    assert len((out / "lists" / "val_vol.txt").read_text().split()) == 20
    assert json.loads((out / convert.STAMP_NAME).read_text())["frames"]["patient013"] == {"ED": 1, "ES": 8}


def test_acdc_round_trip(acdc_run):
    _, truth, out = acdc_run
    img, lab, aff, frame = truth["patient095"]["ES"]
    nimg, naff = _nii(out / "imagesTs" / "patient095_ES.nii.gz")
    nlab, _ = _nii(out / "labelsTs" / "patient095_ES.nii.gz")
    np.testing.assert_allclose(nimg, apply_intensity(img, get_dataset("acdc").intensity), atol=1e-6)
    assert nimg.min() == 0.0 and nimg.max() == 1.0
    np.testing.assert_array_equal(nlab, lab)
    np.testing.assert_allclose(naff, aff)
    h5 = out / "test_vol_h5" / "patient095_ES.npy.h5"
    for key, ref in (("image", nimg), ("label", nlab)):
        vol = LoadImage(image_only=True, reader=H5Reader())(f"{h5}::{key}")
        np.testing.assert_array_equal(vol.numpy(), ref)
    # training slices stack back to the NIfTI volume
    nimg, _ = _nii(out / "imagesTr" / "patient001_ED.nii.gz")
    stack = []
    for k in range(3):
        with np.load(out / "train_npz" / f"patient001_ED_slice{k:03d}.npz") as z:
            stack.append(z["image"].T)
    np.testing.assert_array_equal(np.stack(stack, -1), nimg)


@pytest.mark.parametrize(
    "info,exc,msg",
    [
        (None, FileNotFoundError, r"patient002/Info.cfg: ACDC Info.cfg not found"),
        ("ED: 1\nGroup: NOR\n", convert.ConversionError, r"patient002/Info.cfg: no integer 'ES' frame entry"),
        ("ED: 1\nES: 9\n", FileNotFoundError, r"patient002_frame09.nii.gz: image file not found"),
    ],
    ids=["no_info", "no_es", "missing_frame"],
)
def test_acdc_bad_info(tmp_path, info, exc, msg):
    src = tmp_path / "training"
    synthetic.write_acdc(src, ids=(1, 2))
    cfg = src / "patient002" / "Info.cfg"
    if info is None:
        cfg.unlink()
    else:
        cfg.write_text(info)
    with pytest.raises(exc, match=msg):
        convert.convert_acdc(src, tmp_path / "out", cases=["patient001", "patient002"], progress=False)
    _no_leftovers(tmp_path, "out")


def test_acdc_command_line(tmp_path, capsys):
    from data_prep.acdc import main

    src = tmp_path / "training"
    synthetic.write_acdc(src, ids=(1, 19))
    assert main([str(src), "--output", str(tmp_path / "o"), "--cases", "patient001", "patient019", "--quiet"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "o")
    assert [e["case"] for e in datalist_for("acdc", tmp_path / "o", "validation")] == ["patient019_ED", "patient019_ES"]


def test_prepare_dispatch(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset name 'kits'"):
        convert.prepare("kits", tmp_path)
    with pytest.raises(ValueError, match="source is required"):
        convert.prepare("lits")
    with pytest.raises(FileNotFoundError, match="source folder not found"):
        convert.prepare("acdc", tmp_path / "nope", tmp_path / "o")
    root = convert.prepare("demo", output=tmp_path / "demo", tiny=True)
    assert (root / "dataset.json").is_file()


def test_synapse_transunet_only(tmp_path):
    src = _btcv_one(tmp_path)
    out = convert.convert_synapse(src, tmp_path / "out", cases=["case0001"], nifti=False, progress=False)
    assert not (out / "imagesTs").exists() and (out / "test_vol_h5" / "case0001.npy.h5").is_file()
    (entry,) = datalist_for("synapse", out, "test")
    assert entry["image"].endswith("test_vol_h5/case0001.npy.h5::image") and entry["case"] == "case0001"


def test_convert_into_existing_empty_folder(tmp_path):
    src = _btcv_one(tmp_path)
    (tmp_path / "out").mkdir()
    out = convert.convert_synapse(src, tmp_path / "out", cases=["case0001"], progress=False)
    assert (out / "dataset.json").is_file()


def test_acdc_mtunet_preprocessed_layout(tmp_path):
    # synthetic MT-UNet ACDC: patient001 in train/, patient019 in valid/ (slices), patient002 in test/ (volumes)
    src = tmp_path / "ACDC"
    truth = synthetic.write_mtunet_acdc(src, {"train": (1,), "valid": (19,), "test": (2,)})
    out = convert.prepare("acdc", src, tmp_path / "out", cases=["patient001", "patient019", "patient002"], progress=False)
    assert [e["case"] for e in datalist_for("acdc", out, "validation")] == ["patient019_ED", "patient019_ES"]
    assert (out / "lists" / "train.txt").read_text().split()[-1] == "patient001_ES_slice010"
    rule = get_dataset("acdc").intensity
    for patient, phase, folder in (("patient001", "ES", "imagesTr"), ("patient002", "ED", "imagesTs")):
        img, lab = truth[patient][phase]  # (D, H, W), slices in numeric order 0..10
        nimg, naff = _nii(out / folder / f"{patient}_{phase}.nii.gz")
        nlab, _ = _nii(out / folder.replace("images", "labels") / f"{patient}_{phase}.nii.gz")
        np.testing.assert_allclose(nimg, apply_intensity(img.transpose(2, 1, 0), rule), atol=1e-6)
        np.testing.assert_array_equal(nlab, lab.transpose(2, 1, 0))
        np.testing.assert_allclose(naff, np.eye(4))
    vol = LoadImage(image_only=True, reader=H5Reader())(f"{out}/test_vol_h5/patient002_ED.npy.h5::label")
    np.testing.assert_array_equal(vol.numpy(), truth["patient002"]["ED"][1].transpose(2, 1, 0))
    # a missing slice is reported, nothing is written
    (src / "train" / "case_001_sliceED_4.npz").unlink()
    with pytest.raises(convert.ConversionError, match=r"slices of patient001 ED are not numbered 0..9"):
        convert.prepare("acdc", src, tmp_path / "out2", cases=["patient001"], progress=False)
    _no_leftovers(tmp_path, "out2")


def test_synapse_and_lits_commands(tmp_path, capsys):
    from data_prep.lits import main as lits_main
    from data_prep.synapse import main as synapse_main

    src = _btcv_one(tmp_path)
    assert synapse_main([str(src), "--output", str(tmp_path / "s"), "--cases", "case0001", "--window", "-100", "100", "--no-nifti", "--quiet"]) == 0
    stamp = json.loads((tmp_path / "s" / convert.STAMP_NAME).read_text())
    assert stamp["window"] == [-100.0, 100.0] and not (tmp_path / "s" / "imagesTs").exists()
    lsrc = tmp_path / "LiTS"
    synthetic.write_lits(lsrc, ids=(1, 118))
    assert lits_main([str(lsrc), "--output", str(tmp_path / "l"), "--cases", "volume-1", "volume-118", "--fold", "1", "--slices", "--quiet"]) == 0
    assert [e["case"] for e in datalist_for("lits", tmp_path / "l", "validation")] == ["volume-1"]
    assert (tmp_path / "l" / "test_vol_h5" / "volume-118.npy.h5").is_file()
    assert capsys.readouterr().out.split() == [str(tmp_path / "s"), str(tmp_path / "l")]
