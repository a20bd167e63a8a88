"""End-to-end test of the MSA2Net bundle, run as a user would (two ``monai.bundle run`` subprocesses).

Real data: the tiny (4 mm) version of the svseg demo set (MNI152 grey/white matter from nilearn).
To stay within the default test budget the network input is 64x64 (``--roi_size``; MSA2Net takes
any multiple of 32) and the schedule is 2 epochs of 8 iterations (AdamW 1e-3 from ``demo.json``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "msa2net"
CONFIGS = BUNDLE / "configs"


def _bundle_cmd(run_id: str, config_files: list[str], *extra: str) -> list[str]:
    configs = "[" + ",".join(f"'{CONFIGS / c}'" for c in config_files) + "]"
    return [
        sys.executable, "-m", "monai.bundle", "run", run_id,
        "--meta_file", str(CONFIGS / "metadata.json"),
        "--config_file", configs,
        "--logging_file", str(CONFIGS / "logging.conf"),
        "--bundle_root", str(BUNDLE),
        *extra,
    ]


def _run(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    from svseg.data.demo import prepare_demo

    return Path(prepare_demo(tmp_path_factory.mktemp("demo_tiny"), tiny=True))


def test_msa2net_bundle_training_then_evaluating(tiny_demo: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ["--dataset_name", "demo", "--data_root", str(tiny_demo), "--output_dir", str(out), "--device", "cpu",
              "--roi_size", "[64,64]"]
    _run(_bundle_cmd("training", ["train.json", "demo.json"], *common, "--max_epochs", "2",
                     "--train#epoch_length", "8"))
    assert (out / "models" / "model.pt").is_file(), "training must save the key-metric checkpoint model.pt"

    _run(_bundle_cmd("evaluating", ["train.json", "demo.json", "evaluate.json"], *common))
    import pandas as pd

    metrics = pd.read_csv(out / "metrics.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert summary, "summary.json must not be empty"
    assert {"case", "class", "dice", "hd95"} <= set(metrics.columns)

    test_items = json.loads((tiny_demo / "dataset.json").read_text())["test"]
    classes = ["grey matter", "white matter"]
    # one row per test case and foreground class
    assert len(metrics) == len(test_items) * len(classes)
    assert set(metrics["case"]) == {i["case"] for i in test_items}
    assert set(metrics["class"]) == set(classes)
    assert np.isfinite(metrics["dice"]).all()

    # one overlay picture per evaluated case, a valid PNG
    from PIL import Image

    for item in test_items:
        png = out / "overlays" / f"{item['case']}.png"
        assert png.is_file(), f"run evaluating must draw {png.name}"
        with Image.open(png) as im:
            im.verify()

    # above chance: a prediction drawn at random with the class frequencies scores a Dice equal
    # to the class's volume fraction on average; the trained network must beat that per class.
    import nibabel as nib

    fractions = {c: [] for c in classes}
    for item in test_items:
        lab = np.asarray(nib.load(str(tiny_demo / item["label"])).dataobj)
        for k, c in enumerate(classes, start=1):
            fractions[c].append(float((lab == k).mean()))
    for c in classes:
        dice = float(metrics.loc[metrics["class"] == c, "dice"].mean())
        chance = float(np.mean(fractions[c]))
        assert dice > chance, f"{c}: mean 3D Dice {dice:.3f} is not above chance {chance:.3f}"
