"""The bad-input matrix: every bad input of each command ends with exit 2, one line naming the user's
file and the problem, and nothing written.

The data sets here are synthetic NIfTI files in the Decathlon layout (random content, planted faults):
the check is about formats and faults, not about images. The network is a small MONAI UNet swapped
into the msa2net bundle by override, so each command runs in seconds.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNet
from PIL import Image

from svseg.cli import main

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
NET = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3,
       "channels": [4, 8], "strides": [2], "num_res_units": 0}
SMALL = ["--override", "network_def=" + json.dumps(NET), "--override", "roi_size=[32,32]"]


def _nii(path: Path, array, affine=AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def _case(root: Path, split_dir: str, name: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    img = rng.random((24, 20, 4)).astype(np.float32)
    lab = (img > 0.5).astype(np.uint8) + (img > 0.8).astype(np.uint8)
    _nii(root / f"images{split_dir}" / f"{name}.nii.gz", img)
    _nii(root / f"labels{split_dir}" / f"{name}.nii.gz", lab)
    return {"image": f"./images{split_dir}/{name}.nii.gz", "label": f"./labels{split_dir}/{name}.nii.gz", "case": name}


def _dataset(root: Path, test_labels: bool = True, validation: bool = True) -> Path:
    """A prepared-looking demo-class data set: 3 training, 1 validation, 1 test case (synthetic)."""
    doc = {"name": "synthetic", "labels": {"0": "background", "1": "grey matter", "2": "white matter"},
           "svseg": {"dataset": "demo", "prepared": True},
           "training": [_case(root, "Tr", f"tr{i}", i) for i in range(3)],
           "validation": [_case(root, "Tr", "va0", 10)] if validation else [],
           "test": [_case(root, "Ts", "ts0", 20)]}
    if not test_labels:
        doc["test"] = [{"image": d["image"], "case": d["case"]} for d in doc["test"]]
    (root / "dataset.json").write_text(json.dumps(doc))
    return root


def _run(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def _train(root: Path, out: Path) -> list[str]:
    return ["train", "--bundle", "msa2net", "--config", "demo.json", "--dataset", "demo", "--data-root", str(root),
            "--output", str(out), "--device", "cpu", "--max-epochs", "1", *SMALL,
            "--override", "train#epoch_length=1", "--override", "num_workers=0"]


@pytest.mark.parametrize("fault, expected", [
    ("nan", "tr1.nii.gz: holds NaN or inf values"),
    ("label_ids", "tr1.nii.gz: label ids [5] are not in the class list 0..2 (background, grey matter, white matter)"),
    ("shape", "tr1.nii.gz: label shape (24, 20, 3)"),
    ("png", "tr1.png: file type .png is not one the data set declares"),
    ("truncated", "tr1.nii.gz: truncated gzip stream"),
    ("no_validation_labels", "has no labelled items (validation uses labelled cases only)"),
])
def test_train_refuses_bad_data_before_the_first_iteration(tmp_path, capsys, fault, expected):
    root = _dataset(tmp_path / "data", test_labels=fault != "no_validation_labels",
                    validation=fault != "no_validation_labels")
    doc = json.loads((root / "dataset.json").read_text())
    if fault == "nan":
        arr = np.ones((24, 20, 4), np.float32)
        arr[3, 3, 1] = np.nan
        _nii(root / "imagesTr" / "tr1.nii.gz", arr)
    elif fault == "label_ids":
        lab = np.zeros((24, 20, 4), np.uint8)
        lab[0, 0, 0] = 5
        _nii(root / "labelsTr" / "tr1.nii.gz", lab)
    elif fault == "shape":
        _nii(root / "labelsTr" / "tr1.nii.gz", np.zeros((24, 20, 3), np.uint8))
    elif fault == "png":
        Image.fromarray(np.zeros((24, 20), np.uint8)).save(root / "imagesTr" / "tr1.png")
        doc["training"][1]["image"] = "./imagesTr/tr1.png"
        (root / "dataset.json").write_text(json.dumps(doc))
    elif fault == "truncated":
        data = (root / "imagesTr" / "tr1.nii.gz").read_bytes()
        (root / "imagesTr" / "tr1.nii.gz").write_bytes(data[: len(data) // 2])
    out = tmp_path / "run"
    code, err = _run(capsys, *_train(root, out))
    assert code == 2
    assert err.startswith("svseg train: error: ") and expected in err and "\n" not in err
    assert not out.exists(), "a refused run leaves no output folder"


@pytest.fixture()
def weights(tmp_path) -> Path:
    net = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=[4, 8], strides=[2], num_res_units=0)
    path = tmp_path / "weights" / "model.pt"
    path.parent.mkdir()
    torch.save(net.state_dict(), path)
    return path


def _predict(inp: Path, out: Path, ckpt: Path | None, *extra: str) -> list[str]:
    args = ["predict", "--bundle", "msa2net", "--input", str(inp), "--output", str(out), "--device", "cpu", *SMALL,
            *extra]
    return args + (["--checkpoint", str(ckpt), "--dataset", "demo"] if ckpt is not None else [])


@pytest.mark.parametrize("fault, expected", [
    ("truncated", "scan.nii.gz: truncated gzip stream"),
    ("empty", "scan.nii.gz: file is empty (0 bytes)"),
    ("4d", "scan.nii.gz: has 2 channel(s), the network expects 1"),
    ("garbage", "scan.nii.gz: cannot be read"),
    ("png", "scan.png: is a 2D file; the model was trained on 3D volumes"),
])
def test_predict_refuses_bad_input_before_the_network(tmp_path, capsys, weights, fault, expected):
    scan = _nii(tmp_path / "in" / "scan.nii.gz", np.random.default_rng(0).random((24, 20, 4)).astype(np.float32))
    if fault == "truncated":
        scan.write_bytes(scan.read_bytes()[:200])
    elif fault == "empty":
        scan.write_bytes(b"")
    elif fault == "4d":
        _nii(scan, np.ones((24, 20, 4, 2), np.float32))
    elif fault == "garbage":
        scan.write_bytes(gzip.compress(b"not an image " * 50))
    elif fault == "png":
        scan = tmp_path / "in" / "scan.png"
        Image.fromarray(np.zeros((24, 20), np.uint8)).save(scan)
    out = tmp_path / "pred"
    code, err = _run(capsys, *_predict(scan, out, weights))
    assert code == 2 and err.startswith("svseg predict: error: ") and expected in err and "\n" not in err
    assert not out.exists()


def test_predict_refuses_weights_of_another_network(tmp_path, capsys, weights):
    scan = _nii(tmp_path / "in" / "scan.nii.gz", np.random.default_rng(0).random((24, 20, 4)).astype(np.float32))
    (weights.parent / "svseg_model.json").write_text(json.dumps({"network": "SA2Net", "dataset_name": "acdc"}))
    # the bundle's own network (no override): refused before it is built
    code, err = _run(capsys, "predict", "--bundle", "msa2net", "--input", str(scan), "--output", str(tmp_path / "pred"),
                     "--checkpoint", str(weights))
    assert code == 2 and err == "svseg predict: error: model.pt: holds SA2Net weights, not MSA2Net (bundle 'msa2net')"
    assert not (tmp_path / "pred").exists()


def test_predict_refuses_weights_that_do_not_fit(tmp_path, capsys):
    scan = _nii(tmp_path / "in" / "scan.nii.gz", np.random.default_rng(0).random((24, 20, 4)).astype(np.float32))
    other = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=[8, 16], strides=[2], num_res_units=0)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    code, err = _run(capsys, *_predict(scan, tmp_path / "pred", tmp_path / "other.pt"))
    assert code == 2 and err.startswith("svseg predict: error: other.pt: weights do not fit the UNet network")
    assert not (tmp_path / "pred").exists()


def test_predict_without_weights_or_into_an_unusable_folder(tmp_path, capsys, weights, monkeypatch):
    scan = _nii(tmp_path / "in" / "scan.nii.gz", np.random.default_rng(0).random((24, 20, 4)).astype(np.float32))
    bundles = tmp_path / "bundles"  # a copy of the bundle without trained weights, whatever this checkout holds
    from svseg.bundle import bundle_dir

    (bundles / "msa2net" / "configs").mkdir(parents=True)
    for f in (bundle_dir("msa2net") / "configs").iterdir():
        (bundles / "msa2net" / "configs" / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("SVSEG_BUNDLES_DIR", str(bundles))
    code, err = _run(capsys, *_predict(scan, tmp_path / "pred", None))
    assert code == 2 and "no --checkpoint given and the bundle has no trained weights at" in err
    assert "model.pt" in err and not (tmp_path / "pred").exists()

    blocker = tmp_path / "out.txt"
    blocker.write_text("a file where the output folder should go")
    code, err = _run(capsys, *_predict(scan, blocker / "pred", weights))
    assert code == 2 and err.startswith("svseg predict: error: ") and "not a directory" in err
    assert blocker.read_text().startswith("a file")


def test_evaluate_refuses_unknown_reference_labels(tmp_path, capsys):
    lab = np.zeros((12, 10, 3), np.uint8)
    lab[2:5, 2:5, 1] = 1
    lab[7, 7, 2] = 7
    _nii(tmp_path / "ref" / "c0.nii.gz", lab)
    _nii(tmp_path / "pred" / "c0.nii.gz", np.where(lab == 7, 0, lab).astype(np.uint8))
    out = tmp_path / "eval"
    code, err = _run(capsys, "evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                     "--output", str(out), "--classes", "background", "organ", "tumour")
    assert code == 2
    assert err == ("svseg evaluate: error: c0.nii.gz: label ids [7] are not in the class list 0..2 "
                   "(background, organ, tumour; --classes has 3 names)")
    assert not out.exists()
