"""The converters of the five papers' published layouts (``svseg prepare svanet|uctransnet|awesome_unet|msga|afma``)
on SMALL SYNTHETIC folders (tests/data/paper_layouts.py): each output is planned by the real reader
(``plan_dataset``), its split is checked, and bad inputs fail with the file named and nothing written."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from data_prep.afma import main as afma_main
from data_prep.uctransnet import main as uctransnet_main
from svseg.cli import main as svseg_main
from svseg.data import apply_intensity, plan_dataset, prepare
from svseg.data.convert import ConversionError, identify_layout
from svseg.data.convert.paper_common import kfold_splits
from tests.data.paper_layouts import write_afma, write_awesome_isic, write_msga, write_svanet, write_uctransnet

WRITERS = {
    "svanet": lambda root: write_svanet(root),
    "uctransnet": lambda root: write_uctransnet(root),
    "awesome_unet": lambda root: write_awesome_isic(root),
    "msga": lambda root: write_msga(root),
    "afma": lambda root: write_afma(root),
}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def check_folds(folds: list[dict], training: list[str]) -> None:
    for f in folds:
        assert set(f["train"]).isdisjoint(f["val"]) and f["val"]
        assert set(f["train"]) | set(f["val"]) <= set(training)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_layout_recognised_and_other_layouts_refused(name, tmp_path):
    folders = {other: WRITERS[other](tmp_path / other) for other in WRITERS}
    assert identify_layout(folders[name]) == name
    for other, folder in folders.items():
        if other == name:
            continue
        out = tmp_path / f"out_{name}_{other}"
        with pytest.raises(ConversionError, match=rf"not the .* layout.*svseg prepare {other}"):
            prepare(name, folder, out, progress=False)
        assert_nothing_written(out)
    with pytest.raises(ConversionError, match="not the"):
        prepare(name, tmp_path, tmp_path / "out_empty", progress=False)


def test_svanet_isic(tmp_path):
    out = prepare("svanet", write_svanet(tmp_path / "src"), tmp_path / "out", progress=False)
    doc = load(out / "dataset.json")
    assert doc["channel_names"] == {"0": "R", "1": "G", "2": "B"} and doc["file_ending"] == ".png"
    assert doc["labels"] == {"background": 0, "symptoms": 1} and doc["numTraining"] == 6
    assert doc["svseg"]["protocol"] == "svanet" and doc["svseg"]["source_layout"] == "svanet"
    assert "seed 999" in doc["svseg"]["split"]
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == ["ISIC_0000006_0000.png", "ISIC_0000007_0000.png"]
    mask = np.asarray(Image.open(out / "labelsTr" / "ISIC_0000000.png"))
    assert set(np.unique(mask).tolist()) == {0, 1}
    folds = load(out / "splits_final.json")
    assert len(folds) == 3 and all(len(f["val"]) == 1 for f in folds)
    check_folds(folds, [f"ISIC_{i:07d}" for i in range(6)])
    assert len({tuple(f["val"]) for f in folds}) > 1  # the repeats draw different hold-outs
    plan = plan_dataset(out)
    assert plan["in_channels"] == 3 and plan["protocol"] == "svanet" and len(plan["folds"]) == 3


def test_svanet_atlas_slices_keep_palette_ids_and_scans_together(tmp_path):
    src = write_svanet(tmp_path / "src", "ATLAS", n_train=8, n_val=2, val_dir="test")
    out = prepare("svanet", src, tmp_path / "out", progress=False)
    doc = load(out / "dataset.json")
    assert doc["labels"] == {"background": 0, "liver": 1, "tumour": 2}
    assert (out / "imagesTr" / "im0_nii_0_0000.png").is_file()  # im0.nii_0.jpg: the dot leaves the case id
    assert load(out / "svseg_prepare.json")["sources"]["im0_nii_0"][0].endswith("train/im0.nii_0.jpg")
    ids = np.asarray(Image.open(out / "labelsTr" / "im0_nii_4.png"))
    assert 2 in np.unique(ids)
    for fold in load(out / "splits_final.json"):
        scans = lambda cases: {c.rsplit("_", 1)[0] for c in cases}  # noqa: E731
        assert scans(fold["train"]).isdisjoint(scans(fold["val"]))
    plan_dataset(out)


def test_svanet_bad_inputs(tmp_path):
    src = write_svanet(tmp_path / "src")
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(src / "mask" / "ISIC_0000003.png")
    with pytest.raises(ConversionError, match=r"ISIC_0000003\.png: mask values \[7\]"):
        prepare("svanet", src, tmp_path / "out", progress=False)
    assert_nothing_written(tmp_path / "out")
    (src / "mask" / "ISIC_0000003.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask/ISIC_0000003\.png: mask of .*ISIC_0000003\.jpg"):
        prepare("svanet", src, tmp_path / "out", progress=False)
    assert_nothing_written(tmp_path / "out")
    other = write_svanet(tmp_path / "other", "Unknown")
    with pytest.raises(ConversionError, match="not one of SvANet's sets"):
        prepare("svanet", other, tmp_path / "out", progress=False)


def test_uctransnet_kfold_is_sa2nets_kfold(tmp_path):
    sklearn = pytest.importorskip("sklearn.model_selection")
    out = prepare("uctransnet", write_uctransnet(tmp_path / "src"), tmp_path / "out", progress=False)
    doc = load(out / "dataset.json")
    assert doc["svseg"]["protocol"] == "uctransnet" and doc["numTraining"] == 10
    assert doc["labels"] == {"background": 0, "foreground": 1}
    train = sorted(p.name[: -len("_0000.png")] for p in (out / "imagesTr").iterdir())
    folds = load(out / "splits_final.json")
    expected = [sorted(np.array(train)[v].tolist()) for _, v in
                sklearn.KFold(n_splits=5, shuffle=True, random_state=999).split(train)]
    assert [sorted(f["val"]) for f in folds] == expected
    assert sorted(c for f in folds for c in f["val"]) == train  # the folds partition Train_Folder
    assert len(list((out / "imagesTs").iterdir())) == 2  # the TIFF test images, as RGB PNG
    assert Image.open(next((out / "imagesTs").iterdir())).mode == "RGB"
    plan = plan_dataset(out)
    assert len(plan["folds"]) == 5 and len(plan["cases"]["test"]) == 2


def test_kfold_splits_match_sklearn_for_uneven_sizes():
    sklearn = pytest.importorskip("sklearn.model_selection")
    cases = [f"c{i:02d}" for i in range(13)]
    ours = kfold_splits(cases, 5, 999)
    theirs = [[cases[i] for i in v] for _, v in sklearn.KFold(5, shuffle=True, random_state=999).split(cases)]
    assert [f["val"] for f in ours] == theirs


def test_uctransnet_folders_split_and_masks(tmp_path):
    src = write_uctransnet(tmp_path / "src")
    out = prepare("uctransnet", src, tmp_path / "out", split="folders", progress=False)
    folds = load(out / "splits_final.json")
    assert len(folds) == 1 and len(folds[0]["train"]) == 10 and len(folds[0]["val"]) == 2
    plan_dataset(out)
    bad = src / "Train_Folder" / "labelcol" / "TCGA-01-1001-01Z-00-DX1.png"
    Image.fromarray(np.array([[0, 128], [255, 3]], np.uint8).repeat(16, 0).repeat(16, 1)).save(bad)
    with pytest.raises(ConversionError, match=r"TCGA-01-1001-01Z-00-DX1\.png: mask values \[0, 3, 128, 255\]"):
        prepare("uctransnet", src, tmp_path / "out2", progress=False)
    assert_nothing_written(tmp_path / "out2")
    out3 = prepare("uctransnet", src, tmp_path / "out3", binarize=True, progress=False)  # the authors' > 0 rule
    assert set(np.unique(np.asarray(Image.open(out3 / "labelsTr" / "TCGA-01-1001-01Z-00-DX1.png"))).tolist()) == {0, 1}
    bad.unlink()
    with pytest.raises(FileNotFoundError, match=r"labelcol/TCGA-01-1001-01Z-00-DX1\.png: mask of"):
        prepare("uctransnet", src, tmp_path / "out4", progress=False)
    assert_nothing_written(tmp_path / "out4")


def test_awesome_unet_isic_split(tmp_path):
    out = prepare("awesome_unet", write_awesome_isic(tmp_path / "src"), tmp_path / "out", progress=False)
    doc = load(out / "dataset.json")
    assert doc["svseg"]["protocol"] == "awesome_unet" and doc["labels"] == {"background": 0, "lesion": 1}
    ids = [f"ISIC_{i * 7:07d}" for i in range(10)]
    assert load(out / "splits_final.json") == [{"train": ids[:7], "val": ids[7:8]}]
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == [f"{c}.png" for c in ids[8:]]
    plan_dataset(out)


def test_awesome_unet_bad_inputs(tmp_path):
    src = write_awesome_isic(tmp_path / "src")
    truth = src / "ISIC2018_Task1_Training_GroundTruth"
    Image.fromarray(np.full((32, 32), 200, np.uint8)).save(truth / "ISIC_0000014_segmentation.png")
    with pytest.raises(ConversionError, match=r"ISIC_0000014_segmentation\.png: mask values \[200\]"):
        prepare("awesome_unet", src, tmp_path / "out", progress=False)
    assert_nothing_written(tmp_path / "out")
    (truth / "ISIC_0000014_segmentation.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"ISIC_0000014_segmentation\.png: mask of"):
        prepare("awesome_unet", src, tmp_path / "out", progress=False)
    assert_nothing_written(tmp_path / "out")


def test_msga_restacks_subjects_by_slice_number(tmp_path):
    src = write_msga(tmp_path / "src", n_slices=11)  # 11 slices: "slice_10" sorts before "slice_2" by name
    out = prepare("msga", src, tmp_path / "out", progress=False)
    doc = load(out / "dataset.json")
    assert doc["channel_names"] == {"0": "MRI"} and doc["file_ending"] == ".nii.gz"
    assert doc["svseg"]["protocol"] == "msga" and list(doc["labels"])[1:] == ["liver", "right kidney", "left kidney", "spleen"]
    assert load(out / "splits_final.json") == [{"train": ["Subj_1", "Subj_2", "Subj_5"], "val": ["Subj_8"]}]
    label = np.asarray(nib.load(out / "labelsTr" / "Subj_5.nii.gz").dataobj)
    image = np.asarray(nib.load(out / "imagesTr" / "Subj_5_0000.nii.gz").dataobj)
    assert label.shape == image.shape == (32, 32, 11)
    for y in (1, 2, 10, 11):
        gt = np.asarray(Image.open(src / "train" / "GT" / f"Subj_5slice_{y}.png"))
        assert np.array_equal(label[:, :, y - 1], gt // 63)
        assert np.array_equal(image[:, :, y - 1], np.asarray(Image.open(src / "train" / "Img" / f"Subj_5slice_{y}.png")))
    assert (out / "labelsTs" / "Subj_10.nii.gz").is_file()
    plan = plan_dataset(out)
    assert plan["spatial_dims"] == 3 and plan["protocol"] == "msga"


@pytest.mark.parametrize("problem", ["gap", "zero_padding", "gt_level", "missing_gt", "two_splits"])
def test_msga_bad_inputs(problem, tmp_path):
    src = write_msga(tmp_path / "src")
    img, gt = src / "train" / "Img", src / "train" / "GT"
    if problem == "gap":
        (img / "Subj_2slice_3.png").unlink()
        (gt / "Subj_2slice_3.png").unlink()
        match = r"Subj_2 has slices 1\.\.4 with gaps \(missing \[3\]\)"
    elif problem == "zero_padding":
        (img / "Subj_2slice_3.png").rename(img / "Subj_2slice_03.png")
        match = r"Subj_2slice_03\.png: zero-padded number '03'"
    elif problem == "gt_level":
        Image.fromarray(np.full((32, 32), 100, np.uint8)).save(gt / "Subj_2slice_3.png")
        match = r"GT/Subj_2slice_3\.png: GT grey levels \[100\]"
    elif problem == "missing_gt":
        (gt / "Subj_2slice_3.png").unlink()
        match = r"GT/Subj_2slice_3\.png: GT of"
    else:
        Image.open(img / "Subj_1slice_1.png").save(src / "test" / "Img" / "Subj_1slice_1.png")
        Image.open(gt / "Subj_1slice_1.png").save(src / "test" / "GT" / "Subj_1slice_1.png")
        match = r"subject Subj_1 is also in"
    with pytest.raises((ConversionError, FileNotFoundError), match=match):
        prepare("msga", src, tmp_path / "out", progress=False)
    assert_nothing_written(tmp_path / "out")


def test_afma_lits_clipped_float_tiffs(tmp_path):
    src = write_afma(tmp_path / "src")
    out = prepare("afma", src, tmp_path / "out", progress=False)
    doc = load(out / "dataset.json")
    assert doc["channel_names"] == {"0": "noNorm", "1": "noNorm", "2": "noNorm"} and doc["file_ending"] == ".tif"
    assert doc["svseg"]["protocol"] == "afma" and "[-250, 250]" in doc["svseg"]["intensity_applied"]
    # the plan takes AFMA's rule as it is: a raw slice given to the bundles is clipped the same way
    rule = plan_dataset(out)["intensity"]
    assert rule == {"rule": "ct_window", "a_min": -250.0, "a_max": 250.0, "b_min": -250.0, "b_max": 250.0}
    hu = np.array([[-1000.0, -100.0, 40.0, 3000.0]], np.float32)
    assert apply_intensity(hu, rule).tolist() == [[-250.0, -100.0, 40.0, 250.0]]
    assert doc["labels"] == {"background": 0, "liver": 1, "tumour": 2}
    raw = np.load(src / "train" / "volume-0_1.npy")
    for c in range(3):
        plane = tifffile.imread(out / "imagesTr" / f"volume-0_1_000{c}.tif")
        assert plane.dtype == np.float32 and np.array_equal(plane, np.clip(raw[..., c], -250, 250))
    mask = tifffile.imread(out / "labelsTr" / "volume-0_1.tif")
    assert np.array_equal(mask, np.load(src / "train" / "segmentation-0_1.npy"))
    assert load(out / "splits_final.json") == [{"train": [f"volume-{k // 3}_{k % 3}" for k in range(6)],
                                                "val": ["volume-2_0", "volume-2_1"]}]
    plan = plan_dataset(out)
    assert plan["in_channels"] == 3 and len(plan["cases"]["test"]) == 2


def test_afma_test_masks_optional_and_bad_inputs(tmp_path):
    out = prepare("afma", write_afma(tmp_path / "a", test_masks=False, channels=1), tmp_path / "out", progress=False)
    assert not (out / "labelsTs").exists() and len(list((out / "imagesTs").iterdir())) == 2
    plan_dataset(out)
    src = write_afma(tmp_path / "b")
    np.save(src / "train" / "segmentation-1_0.npy", np.full((32, 32), 3, np.uint8))
    with pytest.raises(ConversionError, match=r"segmentation-1_0\.npy: mask values \[3\]"):
        prepare("afma", src, tmp_path / "out2", progress=False)
    assert_nothing_written(tmp_path / "out2")
    (src / "train" / "segmentation-1_0.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"segmentation-1_0\.npy: mask of .*volume-1_0\.npy"):
        prepare("afma", src, tmp_path / "out2", progress=False)
    assert_nothing_written(tmp_path / "out2")


def test_thin_commands(tmp_path, capsys):
    src = write_uctransnet(tmp_path / "src")
    assert uctransnet_main([str(src), "--output", str(tmp_path / "a"), "--quiet", "--split", "folders"]) == 0
    assert len(load(tmp_path / "a" / "splits_final.json")) == 1
    assert afma_main([str(write_afma(tmp_path / "lits")), "--output", str(tmp_path / "b"), "--quiet",
                      "--window", "-100", "100"]) == 0
    assert tifffile.imread(tmp_path / "b" / "imagesTr" / "volume-0_0_0000.tif").max() <= 100
    assert svseg_main(["prepare", "msga", "--source", str(write_msga(tmp_path / "m")), "--output",
                       str(tmp_path / "c"), "--option", "progress=false"]) == 0
    assert "prepared msga in" in capsys.readouterr().out
    plan_dataset(tmp_path / "c")
