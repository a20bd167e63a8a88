"""Two networks x two folds on the demo data, then find-best, the ensemble prediction and evaluate (slow).

Real data: the tiny (4 mm) svseg demo set (MNI152 grey / white matter from nilearn), rewritten into the
nnU-Net v2 raw layout (training and validation slabs as ``imagesTr``/``labelsTr``, the two test slabs as
``imagesTs``/``labelsTs``) and planned with two folds. SA2-Net (16 features) and AFMA (ResNet-18 encoder)
train at the plan's 64 x 64 for one epoch of two iterations per fold: this checks the workflow end to end
(folds, resume, cross-validation probabilities, find-best, ensembles, evaluation), not accuracy. Only the
documented commands are used (``svseg.cli.main``).
"""
from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from svseg.cli import main
from svseg.inference.writer import read_probabilities

pytestmark = pytest.mark.slow

NETWORKS = {"sa2net": ["network_def#features=16"], "afma": ["encoder_name=resnet18"]}


def write_demo_nnunet(root: Path) -> Path:
    from svseg.data import prepare_demo

    demo = prepare_demo(root / "demo_tiny", tiny=True)
    doc = json.loads((demo / "dataset.json").read_text())
    ds = root / "Dataset002_DemoBrain"
    n = 0
    for split in ("training", "validation", "test"):
        train = split != "test"
        for item in doc[split]:
            for sub, src, name in ((("imagesTr" if train else "imagesTs"), item["image"], f"{item['case']}_0000.nii.gz"),
                                   (("labelsTr" if train else "labelsTs"), item["label"], f"{item['case']}.nii.gz")):
                (ds / sub).mkdir(parents=True, exist_ok=True)
                shutil.copy(demo / src, ds / sub / name)
            n += train
    labels = {name: i for i, name in enumerate(("background", "grey matter", "white matter"))}
    (ds / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": labels, "numTraining": n,
                                                 "file_ending": ".nii.gz", "name": "DemoBrain"}))
    return ds


def svseg(capsys, *args) -> str:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert rc == 0, f"svseg {args[0]} failed: {captured.err[-3000:]}"
    return captured.out


def test_two_networks_two_folds_find_best_ensemble_evaluate(tmp_path, capsys):
    ds = write_demo_nnunet(tmp_path)
    assert "folds: 2" in svseg(capsys, "plan", ds, "--folds", "2")
    runs = tmp_path / "runs"
    common = ["--dataset", ds, "--fold", "all", "--max-epochs", 2, "--device", "cpu", "--override", "num_workers=0",
              "--override", "batch_size=4", "--override", "train#epoch_length=12"]
    for bundle, extra in NETWORKS.items():
        out = svseg(capsys, "train", "--bundle", bundle, "--output", runs / bundle, *common,
                    *[w for o in extra for w in ("--override", o)])
        assert f"trained {runs / bundle / 'fold_1'}" in out
        for k in (0, 1):
            assert (runs / bundle / f"fold_{k}" / "validation" / "predictions.json").is_file()

    # a second --fold all finds both folds finished and trains nothing
    stamp = (runs / "sa2net" / "fold_0" / "checkpoint_latest.pt").stat().st_mtime_ns
    svseg(capsys, "train", "--bundle", "sa2net", "--output", runs / "sa2net", *common, "--override",
          "network_def#features=16")
    assert (runs / "sa2net" / "fold_0" / "checkpoint_latest.pt").stat().st_mtime_ns == stamp

    printed = svseg(capsys, "find-best", ds, "--runs", runs)
    with capsys.disabled():
        print("\n" + printed)  # the ranking table (run with -s to see it)
    best = json.loads((runs / "best.json").read_text())
    assert {r["configuration"] for r in best["ranking"]} == {"afma", "sa2net", "afma + sa2net"}
    assert best["n_cases"] == 5 and best["protocol"] == "standard"
    assert best["best"]["predict_command"] in (runs / "inference_instructions.txt").read_text()

    # the ensemble of both networks x both folds is the mean of the four models' probabilities
    images = ds / "imagesTs"
    singles = []
    for bundle in NETWORKS:
        for k in (0, 1):
            out = tmp_path / f"single_{bundle}_{k}"
            svseg(capsys, "predict", "--bundle", bundle, "--checkpoint", runs / bundle / f"fold_{k}", "--input", images,
                  "--output", out, "--device", "cpu", "--save-probabilities", "--probabilities-dtype", "float32")
            singles.append(out)
    ens = tmp_path / "ensemble"
    out = svseg(capsys, "predict", "--bundle", *NETWORKS, "--checkpoint", *(runs / b for b in NETWORKS),
                "--input", images, "--output", ens, "--device", "cpu", "--save-probabilities",
                "--probabilities-dtype", "float32")
    cases = sorted(p.name[:-len("_0000.nii.gz")] for p in images.iterdir())
    assert [line for line in out.splitlines() if line.startswith(str(ens))] == [str(ens / f"{c}_seg.nii.gz") for c in cases]
    for case in cases:
        mean = np.mean([read_probabilities(s / f"{case}.npz")[0] for s in singles], axis=0)
        got, names = read_probabilities(ens / f"{case}.npz")
        assert names == ["background", "grey matter", "white matter"]
        np.testing.assert_allclose(got, mean, atol=1e-6)
        seg = nib.load(str(ens / f"{case}_seg.nii.gz"))
        src = nib.load(str(images / f"{case}_0000.nii.gz"))
        assert seg.shape == src.shape and np.allclose(seg.affine, src.affine)
        np.testing.assert_array_equal(np.asarray(seg.dataobj), np.argmax(mean, axis=0))

    # the best configuration's own command, then evaluate it on the held-out test slabs
    pred = tmp_path / "best_pred"
    words = shlex.split(best["best"]["predict_command"])
    words = [str(images) if w == "INPUT_FOLDER" else str(pred) if w == "OUTPUT_FOLDER" else w for w in words]
    svseg(capsys, *words[1:], "--device", "cpu")
    report = svseg(capsys, "evaluate", "--pred", pred, "--ref", ds / "labelsTs", "--dataset", ds, "--output",
                   tmp_path / "eval", "--no-plot")
    with capsys.disabled():
        print(report)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["overall"]["n_cases"] == len(cases) and set(summary["classes"]) == {"grey matter", "white matter"}
    assert all(0.0 <= v["dice"] <= 1.0 for v in summary["classes"].values() if v["dice"] is not None)
