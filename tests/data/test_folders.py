"""Users' data set folders read as they are (nnU-Net v2 raw, Decathlon, images/ + masks/), and every bad input
of the own-data issue refused with one clear line naming the file, with nothing written.

The data are SYNTHETIC (tests/data/own_layouts.py), written in exactly these layouts.
"""
from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from svseg.cli import main
from svseg.data import InputError, open_folder, read_image_2d
from tests.data.own_layouts import write_image_folder, write_nnunet_3d


def run_plan(capsys, *args) -> tuple[int, str]:
    rc = main(["plan", *map(str, args)])
    return rc, capsys.readouterr().err


def assert_refused(capsys, folder, *needles, args=()):
    """``svseg plan`` exits 2 with an error naming the problem, and writes no plan.json."""
    rc, err = run_plan(capsys, folder, *args)
    assert rc == 2, err
    assert err.startswith("svseg plan: error: ")
    for needle in needles:
        assert needle in err, err
    assert not (folder / "plan.json").exists()
    assert not list(folder.rglob("*.tmp*"))
    return err


def test_nnunet_layout_read_as_is(tmp_path):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=2, channels=2, use_nnunetv2=False)
    folder = open_folder(ds)
    assert folder.layout == "nnunet"
    assert folder.class_names == ["background", "core", "rim"]
    assert folder.channel_names == ["MRI", "MRI"]
    assert folder.spatial_dims == 3
    assert [i["case"] for i in folder.training] == ["blob_000", "blob_001", "blob_002"]
    assert [p.rsplit("/", 1)[1] for p in folder.training[0]["image"]] == ["blob_000_0000.nii.gz", "blob_000_0001.nii.gz"]
    assert folder.training[0]["label"].endswith("labelsTr/blob_000.nii.gz")
    assert [i["case"] for i in folder.test] == ["blob_003", "blob_004"]
    # the dataset.json path works as well as the folder
    assert open_folder(ds / "dataset.json").training == folder.training


def test_nnunet_ignore_label_and_regions(tmp_path):
    ds = write_nnunet_3d(tmp_path, n_cases=2, n_test=0, use_nnunetv2=False)
    doc = json.loads((ds / "dataset.json").read_text())
    doc["labels"]["ignore"] = 3
    (ds / "dataset.json").write_text(json.dumps(doc))
    assert open_folder(ds).ignore_label == 3
    doc["labels"]["ignore"] = 7
    (ds / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"ignore label must be the highest id \(3\), got 7"):
        open_folder(ds)
    doc["labels"] = {"background": 0, "organ": [1, 2]}
    (ds / "dataset.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="region-based labels are not supported"):
        open_folder(ds)


def test_decathlon_layout(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "imagesTr").mkdir()
    (tmp_path / "labelsTr").mkdir()
    entries = []
    for i in range(3):
        img = rng.normal(size=(16, 16, 4)).astype(np.float32)
        lab = (img > 1).astype(np.uint8)
        nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / "imagesTr" / f"la_{i:03d}.nii.gz")
        nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "labelsTr" / f"la_{i:03d}.nii.gz")
        entries.append({"image": f"./imagesTr/la_{i:03d}.nii.gz", "label": f"./labelsTr/la_{i:03d}.nii.gz"})
    doc = {"name": "Task02_Heart", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "left atrium"},
           "numTraining": 3, "training": entries, "test": []}
    (tmp_path / "dataset.json").write_text(json.dumps(doc))
    folder = open_folder(tmp_path)
    assert folder.layout == "decathlon"
    assert folder.class_names == ["background", "left atrium"]
    assert [i["case"] for i in folder.training] == ["la_000", "la_001", "la_002"]


def test_image_folder_with_labels_option(tmp_path):
    write_image_folder(tmp_path, labels_json=False)
    with pytest.raises(InputError, match="needs class names"):
        open_folder(tmp_path)
    folder = open_folder(tmp_path, labels=["background", "spot"])
    assert folder.layout == "images" and folder.spatial_dims == 2
    assert folder.class_names == ["background", "spot"]


def test_mask_rules(tmp_path):
    """0/255 is binary; a palette PNG gives its indices; grey values are ids; colour RGB masks are refused."""
    binary = np.zeros((4, 5), np.uint8)
    binary[1:3, 1:4] = 255
    Image.fromarray(binary).save(tmp_path / "b.png")
    assert np.array_equal(read_image_2d(tmp_path / "b.png", mask=True)[0], binary // 255)
    ids = np.array([[0, 1, 2, 2, 1]], np.uint8)
    pal = Image.fromarray(ids, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(read_image_2d(tmp_path / "p.png", mask=True)[0], ids)
    Image.fromarray(ids).save(tmp_path / "g.png")
    assert np.array_equal(read_image_2d(tmp_path / "g.png", mask=True)[0], ids)
    colour = np.zeros((4, 5, 3), np.uint8)
    colour[1, 1] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(ValueError, match="colour RGB image"):
        read_image_2d(tmp_path / "c.png", mask=True)
    # the same palette file read as an image is RGB
    assert read_image_2d(tmp_path / "p.png").shape == (3, 1, 5)


# ----------------------------------------------------------------------------- the bad inputs of the issue
def test_label_id_not_in_dataset_json(tmp_path, capsys):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, use_nnunetv2=False)
    lab = nib.load(ds / "labelsTr" / "blob_001.nii.gz")
    data = np.asarray(lab.dataobj).copy()
    data[0, 0, 0] = 5
    nib.save(nib.Nifti1Image(data, lab.affine), ds / "labelsTr" / "blob_001.nii.gz")
    err = assert_refused(capsys, ds, "blob_001.nii.gz: label ids [5] are not in the class list 0..2 (background, core, rim)")
    assert "1 case(s) failed the check" in err


def test_every_failing_case_is_listed(tmp_path, capsys):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, use_nnunetv2=False)
    for case in ("blob_000", "blob_002"):
        lab = nib.load(ds / "labelsTr" / f"{case}.nii.gz")
        data = np.asarray(lab.dataobj).copy()
        data[0, 0, 0] = 9
        nib.save(nib.Nifti1Image(data, lab.affine), ds / "labelsTr" / f"{case}.nii.gz")
    err = assert_refused(capsys, ds, "2 case(s) failed the check")
    assert "blob_000.nii.gz: label ids [9]" in err and "blob_002.nii.gz: label ids [9]" in err


def test_mismatched_image_label_shapes(tmp_path, capsys):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, use_nnunetv2=False)
    nib.save(nib.Nifti1Image(np.zeros((40, 36, 7), np.uint8), np.diag([0.9, 0.9, 2.5, 1])),
             ds / "labelsTr" / "blob_002.nii.gz")
    assert_refused(capsys, ds, "blob_002.nii.gz: label shape (40, 36, 7)", "differs from the image shape (40, 36, 8)")


def test_missing_0000_channel(tmp_path, capsys):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, channels=2, use_nnunetv2=False)
    (ds / "imagesTr" / "blob_001_0000.nii.gz").unlink()
    assert_refused(capsys, ds, "blob_001_0000.nii.gz: channel file missing for case 'blob_001'")


def test_channel_count_disagrees_with_channel_names(tmp_path, capsys):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, channels=2, use_nnunetv2=False)
    doc = json.loads((ds / "dataset.json").read_text())
    doc["channel_names"] = {"0": "MRI"}
    (ds / "dataset.json").write_text(json.dumps(doc))
    assert_refused(capsys, ds, "blob_000_0001.nii.gz: case 'blob_000' has 2 channel files, channel_names lists 1")


def test_rgb_image_where_the_plan_says_grey(tmp_path, capsys):
    root = write_image_folder(tmp_path / "set")
    doc = json.loads((root / "dataset.json").read_text())
    doc["channel_names"] = {"0": "microscopy"}
    (root / "dataset.json").write_text(json.dumps(doc))
    rgb = np.stack([np.full((32, 40), v, np.uint8) for v in (10, 20, 30)], -1)
    Image.fromarray(rgb).save(root / "images" / "img02.png")
    assert_refused(capsys, root, "img02.png: has 3 channel(s)", "an RGB image where grey is expected")


def test_corrupt_png(tmp_path, capsys):
    root = write_image_folder(tmp_path / "set")
    data = (root / "images" / "img01.png").read_bytes()
    (root / "images" / "img01.png").write_bytes(data[: len(data) // 2])
    assert_refused(capsys, root, "img01.png: ", "truncated")


def test_3d_file_in_a_2d_data_set(tmp_path, capsys):
    root = write_image_folder(tmp_path / "set")
    nib.save(nib.Nifti1Image(np.zeros((32, 40, 3), np.float32), np.eye(4)), root / "images" / "vol.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((32, 40, 3), np.uint8), np.eye(4)), root / "masks" / "vol.nii.gz")
    assert_refused(capsys, root, "vol.nii.gz: is a 3D file in a 2D data set")


def test_3d_tiff_stack_in_a_2d_data_set(tmp_path, capsys):
    import tifffile

    root = write_image_folder(tmp_path / "set")
    tifffile.imwrite(root / "images" / "stack.tif", np.zeros((6, 32, 40), np.uint8))
    Image.fromarray(np.zeros((32, 40), np.uint8)).save(root / "masks" / "stack.png")
    assert_refused(capsys, root, "stack.tif: is 3D", "expected a 2D image")


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert_refused(capsys, tmp_path / "empty", "empty: is an empty folder, not a data set")


def test_dataset_json_that_is_not_json(tmp_path, capsys):
    ds = write_nnunet_3d(tmp_path, n_cases=2, n_test=0, use_nnunetv2=False)
    (ds / "dataset.json").write_text("{'labels': oops")
    assert_refused(capsys, ds, "dataset.json: is not valid JSON")


def test_train_on_a_bad_folder_writes_nothing(tmp_path, capsys):
    """The bundles plan a folder on first use: a bad case stops `svseg train` before any output exists."""
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, use_nnunetv2=False)
    shutil.copy(ds / "labelsTr" / "blob_000.nii.gz", ds / "labelsTr" / "blob_001.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4)), ds / "labelsTr" / "blob_002.nii.gz")
    out = tmp_path / "run"
    rc = main(["train", "--bundle", "sa2net", "--dataset", str(ds), "--output", str(out), "--max-epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "blob_002.nii.gz: label shape (8, 8, 8)" in err
    assert not out.exists() and not (ds / "plan.json").exists()


def test_channel_file_missing_at_the_end_is_a_channel_count_error(tmp_path, capsys):
    ds = write_nnunet_3d(tmp_path, n_cases=3, n_test=0, channels=2, use_nnunetv2=False)
    (ds / "imagesTr" / "blob_002_0001.nii.gz").unlink()
    assert_refused(capsys, ds, "blob_002_0000.nii.gz: has 1 channel(s), channel_names of dataset.json lists 2")


def test_nnunet_rgb_png_one_file_three_channel_names(tmp_path):
    """nnU-Net's natural-image convention: one RGB ``<case>_0000.png`` per case, channel_names R, G, B."""
    from svseg.data import plan_dataset

    ds = tmp_path / "Dataset120_Spots"
    write_image_folder(tmp_path / "src", n=3, rgb=True, labels_json=False)
    (ds / "imagesTr").mkdir(parents=True)
    (ds / "labelsTr").mkdir()
    for i in range(3):
        shutil.copy(tmp_path / "src" / "images" / f"img{i:02d}.png", ds / "imagesTr" / f"spot_{i}_0000.png")
        mask = np.asarray(Image.open(tmp_path / "src" / "masks" / f"img{i:02d}.png")) // 255
        Image.fromarray(mask.astype(np.uint8)).save(ds / "labelsTr" / f"spot_{i}.png")
    (ds / "dataset.json").write_text(json.dumps({"channel_names": {"0": "R", "1": "G", "2": "B"},
                                                 "labels": {"background": 0, "spot": 1}, "numTraining": 3,
                                                 "file_ending": ".png"}))
    plan = plan_dataset(ds)
    assert plan["spatial_dims"] == 2 and plan["in_channels"] == 3
    assert plan["intensity"]["rule"] == "rgb_imagenet"


def test_evaluate_takes_classes_and_protocol_from_the_dataset(tmp_path, capsys):
    """`svseg evaluate --dataset` uses the data set's class names and the protocol its dataset.json names."""
    root = write_image_folder(tmp_path / "set")
    doc = json.loads((root / "dataset.json").read_text())
    doc["svseg"] = {"protocol": "uctransnet"}
    (root / "dataset.json").write_text(json.dumps(doc))
    out = tmp_path / "eval"
    rc = main(["evaluate", "--pred", str(root / "masks"), "--ref", str(root / "masks"), "--dataset", str(root),
               "--output", str(out), "--no-plot"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "uctransnet"
    assert list(summary["classes"]) == ["spot"]
    rc = main(["evaluate", "--pred", str(root / "masks"), "--ref", str(root / "masks"), "--dataset", str(root),
               "--output", str(tmp_path / "eval2"), "--no-plot", "--protocol", "standard"])
    assert rc == 0 and json.loads((tmp_path / "eval2" / "summary.json").read_text())["protocol"] == "standard"
