"""``svseg export``: a trained run as a self-contained bundle zip, TorchScript or ONNX, and ``svseg predict --model``.

Real images: the tiny demo set (the MNI152 2009a T1 from nilearn, prepared by svseg). The quick tests use a
run folder made as an svseg training run leaves it, without training: an untrained SA2Net (features 8,
seeded, output biases zeroed so that its labels vary over the image) saved as ``models/model.pt``, its
``svseg_model.json`` written by the training handler (``SaveModelInfo``) with the demo's values, and a synthetic
``progress.json`` (made-up losses and Dice, to check that the README and metadata report them). The slow test
trains for real.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from svseg.bundle import (MODEL_INFO_NAME, SaveModelInfo, bundles_root, class_names, export_run, in_channels,
                          input_mean, input_std, intensity_rule, predict, predict_model, prepared_range, slice_axis,
                          spatial_dims)
from svseg.bundle.export import EXPORT_KEY, PARITY_TOLERANCE, exported_difference, open_model, write_exported
from svseg.cli import main
from svseg.data import prepare_demo
from svseg.networks import AFMA, MSA2Net, MSGA, SA2Net, SvANet

REPO = Path(__file__).resolve().parents[2]
FEATURES = {"network_def#features": 8}
ZIP_FILES = {"LICENSE", "configs/inference.json", "configs/metadata.json", "configs/logging.conf", "models/model.pt",
             f"models/{MODEL_INFO_NAME}", "docs/README.md", "docs/data_license.txt", "docs/progress.png"}


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def _labels(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return Path(prepare_demo(tmp_path_factory.mktemp("demo") / "demo_tiny", tiny=True))


def make_run(run: Path) -> Path:
    """A run folder as ``svseg train --bundle sa2net --dataset demo`` leaves it, with untrained weights (network knob
    ``features=8``, which its ``svseg_model.json`` does not record) and a synthetic ``progress.json``/``progress.png``."""
    torch.manual_seed(0)
    net = SA2Net(spatial_dims=2, in_channels=1, out_channels=3, features=8)
    with torch.no_grad():  # without the heads' biases the argmax follows the image, not one class everywhere
        for head in (net.outc1, net.outc2, net.outc3, net.outc4):
            head.bias.zero_()
    (run / "models").mkdir(parents=True)
    torch.save(net.state_dict(), run / "models" / "model.pt")
    SaveModelInfo(run / "models", {
        "network": "SA2Net", "dataset_name": "demo", "class_names": class_names("demo"), "num_classes": 3,
        "in_channels": in_channels("demo"), "slice_axis": slice_axis("demo"), "spatial_dims": spatial_dims("demo"),
        "fold": 0, "intensity_rule": intensity_rule("demo"), "prepared_range": prepared_range("demo"),
        "intensity_mean": input_mean("demo", 0.0), "intensity_std": input_std("demo", 1.0), "roi_size": [64, 64],
        "inference_mode": "resize"})()
    # synthetic training history (made-up numbers) and a stand-in for the progress plot
    (run / "progress.json").write_text(json.dumps([
        {"epoch": 1, "iteration": 36, "train_loss": 0.9, "val_metric": 0.25, "lr": 1e-3},
        {"epoch": 2, "iteration": 72, "train_loss": 0.5, "val_metric": 0.5, "lr": 1e-3},
        {"epoch": 3, "iteration": 108, "train_loss": 0.4, "val_metric": 0.45, "lr": 1e-3}]))
    (run / "progress.png").write_bytes(b"\x89PNG\r\n\x1a\n synthetic stand-in for the run's progress plot")
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "sa2net_demo_run")


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "sa2net_demo.zip"
    result = export_run(run_dir, out, overrides=FEATURES)
    assert result["bundle"] == "sa2net" and result["path"] == out
    return out


@pytest.fixture(scope="module")
def reference(run_dir, demo, tmp_path_factory) -> dict[str, np.ndarray]:
    """The run's own predictions through the installed sa2net bundle (``svseg predict --checkpoint``)."""
    out = tmp_path_factory.mktemp("reference")
    written = predict("sa2net", demo / "imagesTs", out, checkpoint=run_dir / "models" / "model.pt", device="cpu",
                      overrides=dict(FEATURES))
    labels = {p.name: _labels(p) for p in written}
    assert all(len(np.unique(v)) > 1 for v in labels.values()), "the reference predictions should not be uniform"
    return labels


@pytest.mark.filterwarnings("ignore:No hash value provided")
def test_zip_holds_the_bundle_with_the_model_baked_in(exported, tmp_path):
    from monai.bundle import verify_metadata, verify_net_in_out

    with zipfile.ZipFile(exported) as z:
        assert {n.split("/", 1)[1] for n in z.namelist()} == ZIP_FILES
        assert {n.split("/", 1)[0] for n in z.namelist()} == {"sa2net_demo"}
        z.extractall(tmp_path)
    root = tmp_path / "sa2net_demo"
    config = json.loads((root / "configs" / "inference.json").read_text())
    assert config["num_classes"] == 3 and config["class_names"] == ["background", "grey matter", "white matter"]
    assert config["roi_size"] == [64, 64] and config["in_channels"] == 1 and config["spatial_dims"] == 3
    assert config["intensity_rule"] == intensity_rule("demo") and config["prepared_range"] == [0.0, 1.0]
    assert config["network_def"]["features"] == 8 and config["bundle_root"] == "."
    assert "models" in config["ckpt_dir"] and "runs" not in config["ckpt_dir"]
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    fmt = meta["network_data_format"]
    assert fmt["inputs"]["image"]["num_channels"] == 1 and fmt["inputs"]["image"]["spatial_shape"] == [64, 64]
    assert fmt["inputs"]["image"]["modality"] == "MR"
    assert fmt["outputs"]["pred"]["num_channels"] == 3
    assert list(fmt["outputs"]["pred"]["channel_def"].values()) == ["background", "grey matter", "white matter"]
    assert meta["eval_metrics"] == {"val_mean_dice_best": 0.5, "val_mean_dice_best_epoch": 2}
    assert meta[EXPORT_KEY]["bundle"] == "sa2net" and meta[EXPORT_KEY]["network"] == "SA2Net"
    assert meta[EXPORT_KEY]["preprocessing"]["intensity_rule"]["rule"] == "minmax"
    schema = bundles_root() / Path(meta["schema"]).name  # the shipped copy: nothing is downloaded
    verify_metadata(meta_file=str(root / "configs" / "metadata.json"), filepath=str(schema))
    # the model-zoo check: the network built from the config has the metadata's input and output channels
    verify_net_in_out(net_id="network_def", meta_file=str(root / "configs" / "metadata.json"),
                      config_file=str(root / "configs" / "inference.json"), device="cpu")
    assert (root / "LICENSE").read_text().lstrip().startswith("Apache License")
    data_licence = (root / "docs" / "data_license.txt").read_text()
    assert "MNI152" in data_licence and "nilearn" in data_licence
    readme = (root / "docs" / "README.md").read_text()
    assert "0 background, 1 grey matter, 2 white matter" in readme
    assert "epochs: 3, iterations: 108" in readme and "0.5000 at epoch 2" in readme
    assert "python -m monai.bundle run --config_file sa2net_demo/configs/inference.json" in readme
    info = json.loads((root / "models" / MODEL_INFO_NAME).read_text())
    assert info["network"] == "SA2Net" and info["bundle_overrides"] == FEATURES


def test_model_of_a_user_data_set_runs_without_it(run_dir, demo, tmp_path):
    """A model trained on a data set folder (its svseg_model.json names the folder; synthetic stand-ins for its
    dataset.json and plan.json): the zip states the folder's licence and runs after the folder is gone."""
    from svseg.bundle.export_docs import data_license, dataset_facts

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    folder = tmp_path / "Dataset001_Brain"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps({"name": "Brain", "licence": "CC-BY-4.0"}))
    (folder / "plan.json").write_text(json.dumps({"dataset": {"name": "Brain"}, "modality": "MR",
                                                  "channel_names": ["T1"], "cases": {"training": [{"case": "a"}]}}))
    info = json.loads((run / "models" / MODEL_INFO_NAME).read_text())
    info.update(dataset_name=str(folder), intensity_rule={"rule": "zscore"}, prepared_range=["-inf", "inf"],
                intensity_mean=0.0, intensity_std=1.0)
    (run / "models" / MODEL_INFO_NAME).write_text(json.dumps(info))
    export_run(run, tmp_path / "brain.zip", overrides=FEATURES)
    with zipfile.ZipFile(tmp_path / "brain.zip") as z:
        assert "Its dataset.json states the licence: CC-BY-4.0" in z.read("brain/docs/data_license.txt").decode()
        meta = json.loads(z.read("brain/configs/metadata.json"))
        config = json.loads(z.read("brain/configs/inference.json"))
    assert meta["name"] == "SA2Net trained on Brain"
    assert meta["network_data_format"]["inputs"]["image"]["channel_def"] == {"0": "T1"}
    assert config["prepared_range"] == "$[float('-inf'), float('inf')]"
    (folder / "dataset.json").write_text(json.dumps({"name": "Brain"}))
    assert "unknown, set by the user" in data_license(info, dataset_facts(info))
    shutil.rmtree(folder)
    written = predict_model(tmp_path / "brain.zip", demo / "imagesTs", tmp_path / "pred", device="cpu")
    assert [p.name for p in written] == ["demo_ts0_seg.nii.gz", "demo_ts1_seg.nii.gz"]


def test_monai_bundle_run_on_the_unpacked_zip_outside_the_repo(exported, demo, reference, tmp_path):
    """The documented command, in a subprocess whose working folder is a temporary one outside the repository."""
    assert REPO not in tmp_path.parents
    with zipfile.ZipFile(exported) as z:
        z.extractall(tmp_path)
    out = tmp_path / "pred"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "sa2net_demo/configs/inference.json",
           "--bundle_root", "sa2net_demo", "--input_dir", str(demo / "imagesTs"), "--prediction_dir", str(out),
           "--device", "cpu"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == sorted(reference)
    for name, labels in reference.items():
        assert np.array_equal(_labels(out / name), labels), name
        image = nib.load(str(demo / "imagesTs" / name.replace("_seg", "")))
        assert np.allclose(nib.load(str(out / name)).affine, image.affine)


def test_predict_model_uses_the_zip(exported, demo, reference, tmp_path, capsys):
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(exported), "--input", str(demo / "imagesTs"), "--output", str(out),
                 "--device", "cpu"]) == 0
    for name, labels in reference.items():
        assert np.array_equal(_labels(out / name), labels), name
    assert str(out / next(iter(reference))) in capsys.readouterr().out


def _zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_predict_model_refuses_what_svseg_did_not_export(exported, demo, tmp_path, capsys):
    # synthetic stand-ins: a model-zoo-like bundle zip (metadata without svseg's entry), a text file named .zip,
    # a zip with a member outside its folder
    zoo = _zip(tmp_path / "spleen_ct_segmentation.zip", {
        "spleen_ct_segmentation/configs/metadata.json": json.dumps({"version": "0.5.0", "name": "Spleen"}).encode(),
        "spleen_ct_segmentation/configs/inference.json": b"{}", "spleen_ct_segmentation/models/model.pt": b"x",
        f"spleen_ct_segmentation/models/{MODEL_INFO_NAME}": b"{}"})
    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    slip = _zip(tmp_path / "slip.zip", {"m/configs/metadata.json": b"{}", "m/../../evil.txt": b"x"})
    cases = [([str(zoo)], "spleen_ct_segmentation.zip: is not a model exported by svseg export"),
             ([str(text)], "notes.zip: is not a zip file"),
             ([str(slip)], "slip.zip: has a member outside its folder"),
             ([str(exported), "--bundle", "msga"], "sa2net_demo.zip: holds a sa2net model (SA2Net), not bundle 'msga'"),
             ([str(exported), "--checkpoint", str(exported)], "--checkpoint and --model exclude each other")]
    for i, (model, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert main(["predict", "--model", *model, "--input", str(demo / "imagesTs"), "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()
    assert not (tmp_path.parent / "evil.txt").exists()


def test_export_refuses_bad_runs_and_writes_nothing(run_dir, exported, tmp_path, capsys):
    empty = tmp_path / "empty_run"
    (empty / "models").mkdir(parents=True)
    other = tmp_path / "svanet_run"
    (other / "models").mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, other / "models" / "model.pt")
    (other / "models" / MODEL_INFO_NAME).write_text(json.dumps({"network": "SvANet", "dataset_name": "demo"}))
    bare = tmp_path / "bare_run"
    (bare / "models").mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, bare / "models" / "model.pt")
    cases = [(["--run", str(empty)], "empty_run: holds no trained weights (models/model.pt)"),
             (["--run", str(empty), "--weights", "final"], "empty_run: holds no trained weights (models/model_final.pt)"),
             (["--run", str(exported)], "sa2net_demo.zip: is a zip (an exported model, not a training run)"),
             (["--run", str(other), "--bundle", "sa2net"], "svanet_run: holds SvANet weights (bundle svanet), not SA2Net"),
             (["--run", str(bare)], f"model.pt: has no {MODEL_INFO_NAME} beside it"),
             # the run's network knob is not recorded and not given: the weights do not fit the default SA2Net
             (["--run", str(run_dir)], "model.pt: does not fit the SA2Net that bundle 'sa2net' builds")]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / "out" / f"model{i}.zip"
        assert main(["export", *args, "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.parent.exists() or not any(out.parent.iterdir())


def test_torchscript_and_onnx_exports_of_the_run(run_dir, tmp_path, capsys):
    from monai.data import load_net_with_metadata

    for fmt, name in (("torchscript", "model.ts"), ("onnx", "model.onnx")):
        out = tmp_path / name
        assert main(["export", "--run", str(run_dir), "--output", str(out), "--format", fmt,
                     "--override", "network_def#features=8"]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        difference = float(line.rsplit(" ", 1)[1])
        assert out.is_file() and 0 <= difference <= PARITY_TOLERANCE, line
    net, meta, extra = load_net_with_metadata(str(tmp_path / "model.ts"), more_extra_files=("inference.json",))
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 3
    assert json.loads(extra["inference.json"])["num_classes"] == 3
    # the check can fail: the same file against other weights
    eager = SA2Net(spatial_dims=2, in_channels=1, out_channels=3, features=8)
    eager.load_state_dict(torch.load(run_dir / "models" / "model.pt", weights_only=True))
    for fmt, name in (("torchscript", "model.ts"), ("onnx", "model.onnx")):
        assert exported_difference(eager, tmp_path / name, fmt, (1, 1, 64, 64)) <= PARITY_TOLERANCE
    with torch.no_grad():
        next(eager.parameters()).add_(0.5)
    for fmt, name in (("torchscript", "model.ts"), ("onnx", "model.onnx")):
        assert exported_difference(eager, tmp_path / name, fmt, (1, 1, 64, 64)) > PARITY_TOLERANCE
    # a difference above the tolerance refuses the file and leaves nothing behind; the refusal compares both
    # float32 results with a float64 run
    assert main(["export", "--run", str(run_dir), "--output", str(tmp_path / "refused.onnx"), "--format", "onnx",
                 "--override", "network_def#features=8", "--tolerance", "0"]) == 2
    err = capsys.readouterr().err
    assert "differs from the eager network" in err and "against a float64 run of the network the export is off" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.ts"]


# one small build per network and format; the default suite keeps AFMA's ONNX export (its head needed a change to
# export), and exports SA2Net both ways in test_torchscript_and_onnx_exports_of_the_run; the rest is slow
BUILDS = {
    "SA2Net": lambda: SA2Net(2, 1, 3, features=16),
    "AFMA": lambda: AFMA(2, 1, 3, encoder_name="resnet18"),
    "SvANet": lambda: SvANet(2, 1, 3, img_size=64, base_width=16),
    "MSGA": lambda: MSGA(2, 1, 3, backbone="resnet50", features=16),
    "MSA2Net": lambda: MSA2Net(2, 1, 3, img_size=64),
}
PARITY = [pytest.param(name, fmt, id=f"{fmt}-{name}", marks=() if (name, fmt) == ("AFMA", "onnx") else pytest.mark.slow)
          for name in BUILDS for fmt in ("torchscript", "onnx")]


@pytest.mark.parametrize(("name", "fmt"), PARITY)
def test_export_parity_per_network(name, fmt, tmp_path):
    """Traced at batch 1, reloaded (onnxruntime for ONNX), compared on a fresh input at batch 2."""
    torch.manual_seed(0)
    difference = write_exported(BUILDS[name]().eval(), tmp_path / f"net.{fmt}", fmt, (1, 1, 64, 64))
    print(f"{name} {fmt} max abs difference {difference:.3g}")
    assert difference <= PARITY_TOLERANCE


@pytest.mark.slow
def test_trained_run_exported_and_run_anywhere(demo, tmp_path):
    """svseg train (tiny, real demo data) -> svseg export -> python -m monai.bundle ckpt_export and run on the
    unpacked zip in a temporary folder -> the same labels as svseg predict with the run's checkpoint and with
    --model; the TorchScript of ckpt_export matches the eager network."""
    run = tmp_path / "run"
    svseg = [sys.executable, "-m", "svseg.cli"]
    train = svseg + ["train", "--bundle", "sa2net", "--dataset", "demo", "--data-root", str(demo), "--output", str(run),
                     "--max-epochs", "1", "--device", "cpu", "--override", "train#epoch_length=4",
                     "--override", "batch_size=2", "--override", "roi_size=[64,64]",
                     "--override", "network_def#features=8", "--override", "val_interval=1",
                     "--override", "val_start_epoch=0"]
    for cmd in (train, svseg + ["export", "--run", str(run), "--output", str(tmp_path / "m.zip"),
                                "--override", "network_def#features=8"]):
        proc = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    with zipfile.ZipFile(tmp_path / "m.zip") as z:
        z.extractall(work)
    bundle = work / "m"
    commands = [
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", "m/configs/inference.json", "--bundle_root", "m",
         "--input_dir", str(demo / "imagesTs"), "--prediction_dir", str(work / "pred"), "--device", "cpu"],
        [sys.executable, "-m", "monai.bundle", "ckpt_export", "network_def", "--filepath", "m/models/model.ts",
         "--ckpt_file", "m/models/model.pt", "--meta_file", "m/configs/metadata.json",
         "--config_file", "m/configs/inference.json", "--bundle_root", "m", "--use_trace", "True",
         "--input_shape", "[1, 1, 64, 64]"]]
    for cmd in commands:
        proc = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
    predict("sa2net", demo / "imagesTs", tmp_path / "ckpt", checkpoint=run / "models" / "model.pt", device="cpu",
            overrides=dict(FEATURES))
    assert main(["predict", "--model", str(tmp_path / "m.zip"), "--input", str(demo / "imagesTs"),
                 "--output", str(tmp_path / "zip"), "--device", "cpu"]) == 0
    for f in sorted((tmp_path / "ckpt").glob("*_seg.nii.gz")):
        assert np.array_equal(_labels(work / "pred" / f.name), _labels(f)), f.name
        assert np.array_equal(_labels(tmp_path / "zip" / f.name), _labels(f)), f.name
    net = SA2Net(2, 1, 3, features=8)
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    assert exported_difference(net, bundle / "models" / "model.ts", "torchscript", (1, 1, 64, 64)) <= PARITY_TOLERANCE
    with open_model(tmp_path / "m.zip") as (folder, weights):
        assert json.loads((folder / "configs" / "metadata.json").read_text())[EXPORT_KEY]["run"] == "run"
