"""Tests of the ``svseg`` command line (:mod:`svseg.cli`) and the pictures of :mod:`svseg.report`.

Volumes here are synthetic (random intensities with ellipsoid "organs"), written as NIfTI with a
non-trivial affine; the slow test at the end runs the commands on the real demo data.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from svseg.cli import build_parser, main, parse_overrides
from svseg.report import boxplot_png, class_color, overlay_png, overlay_size, report, select_slices

AFFINE = np.array([[1.5, 0, 0, 5.0], [0, 1.5, 0, -7.0], [0, 0, 3.0, 2.0], [0, 0, 0, 1]])


def _synthetic_case(shape=(32, 28, 10), shift=1, seed=0):
    """Synthetic image + reference with two nested ellipsoids; prediction = reference shifted."""
    rng = np.random.default_rng(seed)
    x, y, z = np.mgrid[: shape[0], : shape[1], : shape[2]]
    c = [s / 2 for s in shape]
    r = ((x - c[0]) / (shape[0] / 3)) ** 2 + ((y - c[1]) / (shape[1] / 3)) ** 2 + ((z - c[2]) / (shape[2] / 2.5)) ** 2
    ref = np.zeros(shape, np.uint8)
    ref[r < 1] = 1
    ref[r < 0.3] = 2
    img = (rng.random(shape) * 50 + ref * 60).astype(np.float32)
    pred = np.roll(ref, shift, axis=0)
    return img, ref, pred


def _write_cases(root: Path, n=2):
    import nibabel as nib

    for d in ("img", "ref", "pred"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, ref, pred = _synthetic_case(seed=i, shift=i + 1)
        nib.save(nib.Nifti1Image(img, AFFINE), root / "img" / f"case{i}_0000.nii.gz")
        nib.save(nib.Nifti1Image(ref, AFFINE), root / "ref" / f"case{i}.nii.gz")
        nib.save(nib.Nifti1Image(pred, AFFINE), root / "pred" / f"case{i}.nii.gz")


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((name, a) for a in sub._actions)
        else:
            yield ("svseg", action)


def test_help_explains_every_option(capsys):
    parser = build_parser()
    for cmd, action in _all_actions(parser):
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help and len(action.help) > 10, f"{cmd} {action.option_strings or action.dest} has no help"
    for cmd in ("", "demo", "prepare", "train", "predict", "evaluate", "report"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"] if cmd else ["--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "usage: svseg" in text
    # the predict help names the options of the issue
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = capsys.readouterr().out
    for opt in ("--bundle", "--input", "--output", "--checkpoint", "--device"):
        assert opt in text


def test_console_entry_point_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "svseg.cli", "evaluate", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--protocol" in out.stdout and "transunet" in out.stdout
    script = Path(sys.executable).parent / "svseg"  # the console script of setup.cfg, when installed
    if script.exists():
        out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "svseg predict" in out.stdout and "examples:" in out.stdout


def test_parse_overrides():
    assert parse_overrides(["max_epochs=2", "roi_size=[160,160]", "name=msa2net", "--amp=true"]) == {
        "max_epochs": 2, "roi_size": [160, 160], "name": "msa2net", "amp": True}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["max_epochs"])


def test_select_slices_spread_over_foreground():
    ref = np.zeros((8, 8, 20), np.uint8)
    ref[2:5, 2:5, 6:14] = 1
    s = select_slices(ref, None, 4)
    assert len(s) == 4 and all(6 <= z < 14 for z in s) and s == sorted(set(s))
    assert select_slices(np.zeros((4, 4, 3)), None, 5) == [0, 1, 2]  # empty: whole volume, at most depth
    with pytest.raises(ValueError, match="n_slices"):
        select_slices(ref, None, 0)


def test_overlay_png_valid_and_expected_size(tmp_path):
    from PIL import Image

    img, ref, pred = _synthetic_case()
    path = overlay_png(img, ref, pred, tmp_path / "case.png", n_slices=3, class_names=["bg", "organ", "core"])
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == overlay_size(3) == (900, 360)
        rgb = np.asarray(im.convert("RGB")).astype(int)
    def near(colour: str) -> np.ndarray:
        target = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        return (np.abs(rgb - target).sum(-1) < 40)

    organ, core = near(class_color(1)), near(class_color(2))
    assert organ.sum() > 50 and core.sum() > 50  # each class drawn in its own colour
    with pytest.raises(ValueError, match="shape"):
        overlay_png(img, ref[:-1], pred, tmp_path / "bad.png")


def test_cli_evaluate_then_report(tmp_path, capsys):
    from PIL import Image

    _write_cases(tmp_path)
    out = tmp_path / "eval"
    code = main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--protocol", "standard",
                 "--output", str(out), "--classes", "background", "organ", "core", "--images", str(tmp_path / "img"),
                 "--n-slices", "3"])
    assert code == 0
    text = capsys.readouterr().out
    assert "organ" in text and "mean over classes" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "standard" and summary["overall"]["n_cases"] == 2
    assert 0.0 < summary["classes"]["organ"]["dice"] < 1.0
    pngs = sorted((out / "overlays").glob("*.png"))
    assert [p.name for p in pngs] == ["case0.png", "case1.png"]
    for p in pngs:
        with Image.open(p) as im:
            assert im.size == overlay_size(3)
    # report rebuilds the pictures from the folder alone (sources recorded by evaluate)
    for p in pngs:
        p.unlink()
    (out / "boxplot.png").unlink()
    assert main(["report", str(out), "--n-slices", "3"]) == 0
    assert "organ" in capsys.readouterr().out
    assert len(list((out / "overlays").glob("*.png"))) == 2
    with Image.open(out / "boxplot.png") as im:
        assert im.format == "PNG"

    # transunet protocol works too
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"), "--protocol",
                 "transunet", "--output", str(tmp_path / "eval_tu")]) == 0
    assert json.loads((tmp_path / "eval_tu" / "summary.json").read_text())["protocol"] == "transunet"


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "metrics.csv" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(tmp_path / "nope"), "--ref", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "pred_dir" in capsys.readouterr().err
    assert main(["predict", "--bundle", "msa2net", "--input", str(tmp_path / "missing.nii.gz"), "--output", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_boxplot_from_metrics_csv(tmp_path):
    from PIL import Image

    (tmp_path / "metrics.csv").write_text("case,class,dice,hd95\na,liver,0.9,3.0\nb,liver,0.8,\na,kidney,0.7,5.0\n")
    boxplot_png(tmp_path / "metrics.csv", tmp_path / "box.png", protocol="standard")
    with Image.open(tmp_path / "box.png") as im:
        assert im.format == "PNG" and im.size[0] >= 600
    res = report(tmp_path, print_summary=False, overlays=False)
    assert "liver" in res["summary"] and "0.8500" in res["summary"]


def test_cli_predict_keeps_geometry_with_a_small_network(tmp_path):
    """``svseg predict`` through the msa2net bundle's inference.json, with its network swapped for
    a small MONAI UNet by an override (the plumbing is the same; the slow test uses MSA2Net)."""
    import nibabel as nib
    import torch

    img, _, _ = _synthetic_case(shape=(24, 20, 3))
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(img, AFFINE), tmp_path / "in" / "scan.nii.gz")
    permuted = np.array([[-1.5, 0, 0, 30.0], [0, 0, 2.0, -7.0], [0, -1.2, 0, 2.0], [0, 0, 0, 1]])  # not RAS
    nib.save(nib.Nifti1Image(img[::-1].copy(), permuted), tmp_path / "in" / "scan2.nii.gz")
    net_def = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3,
               "channels": [4, 8], "strides": [2], "num_res_units": 0}
    from monai.networks.nets import UNet

    net = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=[4, 8], strides=[2], num_res_units=0)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    common = ["--checkpoint", str(tmp_path / "model.pt"), "--device", "cpu", "--dataset", "demo",
              "--override", "network_def=" + json.dumps(net_def), "--override", "roi_size=[32,32]"]
    # one file
    assert main(["predict", "--bundle", "msa2net", "--input", str(tmp_path / "in" / "scan.nii.gz"),
                 "--output", str(tmp_path / "out1"), *common]) == 0
    seg = nib.load(tmp_path / "out1" / "scan_seg.nii.gz")
    assert seg.shape == img.shape
    np.testing.assert_allclose(seg.affine, AFFINE, atol=1e-5)
    assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2}
    # a folder
    assert main(["predict", "--bundle", "msa2net", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out2"),
                 *common]) == 0
    assert sorted(p.name for p in (tmp_path / "out2").iterdir()) == [
        "scan2_seg.nii.gz", "scan2_statistics.json", "scan_seg.nii.gz", "scan_statistics.json"]
    seg2 = nib.load(tmp_path / "out2" / "scan2_seg.nii.gz")
    assert seg2.shape == img.shape
    np.testing.assert_allclose(seg2.affine, permuted, atol=1e-5)


@pytest.mark.slow
def test_cli_on_demo_data_with_msa2net(tmp_path):
    """Real data: the tiny demo set; predict with an (untrained) MSA2Net checkpoint, evaluate the
    predictions against the demo labels with overlays, then report."""
    import torch
    from monai.bundle import ConfigParser

    from svseg.bundle import bundle_dir
    from svseg.data import datalist_for, prepare_demo

    root = prepare_demo(tmp_path / "demo", tiny=True)
    entries = datalist_for("demo", str(root), "test")[:1]
    parser = ConfigParser()
    parser.read_config(str(bundle_dir("msa2net") / "configs" / "inference.json"))
    parser["dataset_name"] = "demo"
    parser["data_root"] = str(root)
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "model.pt")
    img_dir, ref_dir = tmp_path / "images", tmp_path / "labels"
    img_dir.mkdir()
    ref_dir.mkdir()
    for e in entries:
        (img_dir / Path(e["image"]).name).symlink_to(e["image"])
        (ref_dir / Path(e["image"]).name).symlink_to(e["label"])
    assert main(["predict", "--bundle", "msa2net", "--input", str(img_dir), "--output", str(tmp_path / "pred"),
                 "--checkpoint", str(tmp_path / "model.pt"), "--device", "cpu", "--dataset", "demo",
                 "--override", f"data_root={root}"]) == 0
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--ref", str(ref_dir), "--protocol", "standard",
                 "--output", str(tmp_path / "eval"), "--images", str(img_dir)]) == 0
    assert (tmp_path / "eval" / "metrics.csv").is_file()
    assert len(list((tmp_path / "eval" / "overlays").glob("*.png"))) == len(entries)
    assert main(["report", str(tmp_path / "eval")]) == 0


def test_write_case_overlay_from_metatensor(tmp_path):
    import torch
    from monai.data import MetaTensor
    from PIL import Image

    from svseg.report import write_case_overlay

    img, ref, pred = _synthetic_case()
    image = MetaTensor(torch.from_numpy(img)[None], affine=torch.from_numpy(AFFINE))
    path = write_case_overlay(image, torch.from_numpy(ref)[None], pred, tmp_path, "c7", n_slices=2)
    assert path == tmp_path / "overlays" / "c7.png"
    with Image.open(path) as im:
        assert im.size == overlay_size(2)


@pytest.mark.slow
def test_cli_demo_produces_valid_pictures(tmp_path, capsys):
    """``svseg demo`` on the tiny demo data (2 training iterations): progress.png, one overlay per
    test case and the box plot exist and are valid PNGs of the expected sizes."""
    from PIL import Image

    from svseg.data import datalist_for, prepare_demo
    from svseg.training import ProgressPlot

    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--tiny", "--max-iterations", "2", "--num-threads", "1",
                 "--data-dir", str(tmp_path / "data")]) == 0
    assert "mean 3D Dice" in capsys.readouterr().out
    with Image.open(out / "progress.png") as im:
        im.verify()
    with Image.open(out / "progress.png") as im:
        assert im.size == ProgressPlot(out).image_size == (1000, 800)
    n_test = len(datalist_for("demo", str(prepare_demo(tmp_path / "data", tiny=True)), "test"))
    overlays = sorted((out / "overlays").glob("*.png"))
    assert len(overlays) == n_test > 0
    for p in overlays:
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size == overlay_size(6)
    with Image.open(out / "boxplot.png") as im:
        assert im.format == "PNG"
    assert main(["report", str(out), "--no-overlays"]) == 0


def test_cli_train_resumes_automatically(tmp_path):
    """``svseg train`` on the tiny demo data (the msa2net bundle with a small UNet swapped in by
    override, 3 iterations per epoch): 1 epoch, then a second call with --max-epochs 2 resumes
    from checkpoint_latest.pt and trains only epoch 2."""
    import torch

    from svseg.data import prepare_demo

    root = prepare_demo(tmp_path / "data", tiny=True)
    net = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3,
           "channels": [4, 8], "strides": [2], "num_res_units": 0}
    out = tmp_path / "run"
    args = ["train", "--bundle", "msa2net", "--config", "demo.json", "--dataset", "demo", "--data-root", str(root),
            "--output", str(out), "--device", "cpu", "--override", "network_def=" + json.dumps(net),
            "--override", "roi_size=[32,32]", "--override", "train#epoch_length=3",
            "--override", "checkpoint_every_epoch=true", "--override", "num_workers=0"]
    assert main([*args, "--max-epochs", "1"]) == 0
    assert torch.load(out / "checkpoint_latest.pt", weights_only=True)["meta"]["iteration"] == 3
    first = json.loads((out / "progress.json").read_text())
    assert main([*args, "--max-epochs", "2"]) == 0
    meta = torch.load(out / "checkpoint_latest.pt", weights_only=True)["meta"]
    assert meta["epoch"] == 2 and meta["iteration"] == 6
    progress = json.loads((out / "progress.json").read_text())
    assert [h["epoch"] for h in progress] == [1, 2]
    assert progress[0] == first[0]  # epoch 1 was not trained again (same loss and epoch time)
    with pytest.raises(SystemExit):
        main([*args, "--tracking", "bogus"])


def test_cli_prepare_demo_and_missing_source(tmp_path, capsys):
    assert main(["prepare", "demo", "--output", str(tmp_path / "demo"), "--option", "tiny=true"]) == 0
    assert (tmp_path / "demo" / "dataset.json").is_file()
    assert str(tmp_path / "demo") in capsys.readouterr().out
    assert main(["prepare", "synapse", "--output", str(tmp_path / "syn")]) == 2
    assert "source" in capsys.readouterr().err
