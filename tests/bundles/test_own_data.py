"""Your own data through all five bundles, with only the documented commands (slow suite).

* A 3D data set in the nnU-Net v2 raw layout, its ``dataset.json`` written by ``nnunetv2``'s own
  ``generate_dataset_json`` (SYNTHETIC blobs, tests/data/own_layouts.py): ``svseg plan`` -> ``svseg train
  --bundle <each of the five> --dataset <folder> --max-epochs 1`` -> ``svseg predict`` -> ``svseg evaluate``.
* The REAL DSB2018 nuclei of the stardist wheel, tiled into a 2D images/ + masks/ set: SA2-Net and SvANet (the
  microscopy and the small-object papers) train a short run and must beat the best trivial predictor.
"""
from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from svseg.bundle import run_bundle
from svseg.cli import main
from svseg.data import plan_datalist, read_image_2d
from tests.data.own_layouts import write_nnunet_3d, write_nuclei

pytestmark = pytest.mark.slow

BUNDLES = ("svanet", "msa2net", "afma", "sa2net", "msga")


def printed_paths(out: str, folder) -> list[str]:
    """The lines of a command's output that name files in ``folder`` (MONAI's log lines go to stdout too)."""
    return [line for line in out.splitlines() if line.startswith(str(folder))]


def svseg(capsys, *args) -> str:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert rc == 0, f"svseg {args[0]} failed: {captured.err}"
    return captured.out


@pytest.fixture(scope="module")
def nnunet_set(tmp_path_factory):
    pytest.importorskip("nnunetv2.dataset_conversion.generate_dataset_json",
                        reason="nnunetv2 is the reference writer of the layout (make test installs it)")
    root = tmp_path_factory.mktemp("nnunet_raw")
    return write_nnunet_3d(root, n_cases=4, n_test=1, channels=2, shape=(40, 36, 6))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_nnunet_set_through_every_bundle(bundle, nnunet_set, tmp_path, capsys):
    ds = nnunet_set
    out = svseg(capsys, "plan", ds)
    assert "Dataset001_Blobs (nnunet layout): 4 training, 1 test case(s), 3D" in out
    run = tmp_path / "run"
    # two iterations: this test is about the data path (plan, multi-channel 3D input, geometry of the output);
    # whether the networks learn is the learning floors' job (tests/training/test_learning_floor.py)
    svseg(capsys, "train", "--bundle", bundle, "--dataset", ds, "--max-epochs", "1", "--output", run,
          "--device", "cpu", "--override", "num_workers=0", "--override", "batch_size=4",
          "--override", "train#epoch_length=2")
    info = json.loads((run / "models" / "svseg_model.json").read_text())
    assert info["dataset_name"] == str(ds) and info["class_names"] == ["background", "core", "rim"]
    assert info["fold"] == 0 and info["spatial_dims"] == 3 and info["in_channels"] == 2

    # predict the held-out imagesTs case (nnU-Net channel names) and the fold's validation cases
    pred_ts = tmp_path / "pred_ts"
    out = svseg(capsys, "predict", "--bundle", bundle, "--input", ds / "imagesTs", "--output", pred_ts,
                "--checkpoint", run / "models" / "model.pt", "--device", "cpu")
    assert printed_paths(out, pred_ts) == [str(pred_ts / "blob_004_seg.nii.gz")]
    src, seg = nib.load(ds / "imagesTs" / "blob_004_0001.nii.gz"), nib.load(pred_ts / "blob_004_seg.nii.gz")
    assert seg.shape == src.shape and np.allclose(seg.affine, src.affine)
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}

    val = tmp_path / "val_images"
    val.mkdir()
    for item in plan_datalist(ds, "validation", 0):
        for c, f in enumerate(item["image"]):
            (val / f"{item['case']}_{c:04d}.nii.gz").symlink_to(f)
    pred = tmp_path / "pred_val"
    svseg(capsys, "predict", "--bundle", bundle, "--input", val, "--output", pred,
          "--checkpoint", run / "models" / "model.pt", "--device", "cpu")
    ev = tmp_path / "eval"
    svseg(capsys, "evaluate", "--pred", pred, "--ref", ds / "labelsTr", "--output", ev, "--allow-missing",
          "--dataset", ds)
    rows = list(csv.DictReader((ev / "metrics.csv").open()))
    assert {r["class"] for r in rows} == {"core", "rim"}
    assert {r["case"] for r in rows} == {i["case"] for i in plan_datalist(ds, "validation", 0)}
    assert all(0.0 <= float(r["dice"]) <= 1.0 for r in rows)


def trivial_dice(masks: list[np.ndarray]) -> float:
    """Dice of the best trivial predictor of the set: everything nucleus (the all-background one scores 0)."""
    fg = sum(int((m > 0).sum()) for m in masks)
    total = sum(m.size for m in masks)
    return 2 * fg / (fg + total)


# SA2-Net only: SvANet ran here too (152 s, the slow suite's third most expensive test) until the learning floors
# (tests/training/test_learning_floor.py) made every network's learning on these nuclei a test of its own; the
# own-data checks below (image-folder layout through the CLI, --small-objects, the bundle's evaluation agreeing,
# preprocessing carried by the model) do not depend on the network.
@pytest.mark.parametrize("bundle,epochs", [("sa2net", 4)])
def test_real_nuclei_learn(bundle, epochs, tmp_path, capsys):
    ds = write_nuclei(tmp_path / "nuclei")
    svseg(capsys, "plan", ds)
    run = tmp_path / "run"
    svseg(capsys, "train", "--bundle", bundle, "--dataset", ds, "--max-epochs", epochs, "--output", run,
          "--device", "cpu", "--override", "num_workers=0", "--override", "batch_size=4")
    val = tmp_path / "val"
    val.mkdir()
    cases = plan_datalist(ds, "validation", 0)
    for item in cases:
        shutil.copy(item["image"], val / f"{item['case']}.png")  # a copy: the folder is moved away below
    pred = tmp_path / "pred"
    written = printed_paths(svseg(capsys, "predict", "--bundle", bundle, "--input", val, "--output", pred,
                                  "--checkpoint", run / "models" / "model.pt", "--device", "cpu"), pred)
    assert sorted(written) == sorted(str(pred / f"{i['case']}_seg.png") for i in cases)
    ev = tmp_path / "eval"
    svseg(capsys, "evaluate", "--pred", pred, "--ref", ds / "masks", "--output", ev, "--allow-missing",
          "--dataset", ds, "--small-objects")
    summary = json.loads((ev / "summary.json").read_text())
    dice = summary["classes"]["nucleus"]["dice"]
    chance = trivial_dice([read_image_2d(i["label"], mask=True) for i in cases])
    assert dice > chance + 0.1, f"{bundle}: Dice {dice:.3f} after {epochs} epochs, trivial predictor {chance:.3f}"
    assert (ev / "small_objects.csv").is_file()
    # the bundle's own evaluation (python -m monai.bundle run evaluating) scores the same validation tiles
    bundle_eval = tmp_path / "bundle_eval"
    run_bundle("evaluating", bundle, ("train.json", "evaluate.json"), dataset_name=str(ds), output_dir=str(bundle_eval),
               ckpt_path=str(run / "models" / "model.pt"), device="cpu")
    rows = list(csv.DictReader((bundle_eval / "metrics.csv").open()))
    assert sorted(r["case"] for r in rows) == sorted(i["case"] for i in cases)
    bundle_dice = json.loads((bundle_eval / "summary.json").read_text())["classes"]["nucleus"]["dice"]
    assert bundle_dice == pytest.approx(dice, abs=0.02)
    # the model carries its preprocessing: with the data set folder gone, svseg predict gives the same masks
    moved = ds.rename(ds.with_name("moved_away"))
    again = tmp_path / "pred_again"
    svseg(capsys, "predict", "--bundle", bundle, "--input", val, "--output", again,
          "--checkpoint", run / "models" / "model.pt", "--device", "cpu")
    for item in cases:
        first = read_image_2d(pred / f"{item['case']}_seg.png", mask=True)
        assert np.array_equal(read_image_2d(again / f"{item['case']}_seg.png", mask=True), first)
    moved.rename(ds)
