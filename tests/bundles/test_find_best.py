"""``svseg find-best`` on SYNTHETIC cross-validation runs whose scores are known by construction.

Two fake networks (tests/bundles/cv_data.py: the files a fold run leaves, no training) on a planned set
of SYNTHETIC blobs with two folds:

* ``afma`` puts 0.9 on the reference everywhere, plus a spurious 18-voxel ``core`` cube away from the
  real one: keep-largest on ``core`` makes it perfect;
* ``sa2net`` puts 0.8 on the reference but calls the first 3 of the 10 ``rim`` rows background.

By hand: afma's ``core`` Dice is 2*864/(2*864+18) per case, ``rim`` 1; sa2net's ``rim`` Dice is
2*336/(336+480), ``core`` 1. Their mean keeps afma's cube (0.5 core vs 0.425 background) and mends
sa2net's rows (0.5 rim vs 0.425 background), so the ensemble equals afma; with keep-largest both score
1.0 and the tie goes to the single network.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from svseg.bundle import find_best
from svseg.cli import main
from svseg.errors import InputError
from tests.bundles.cv_data import fake_fold_run, planned_blobs, probabilities

CORE_DICE = 2 * 864 / (2 * 864 + 18)
RIM_DICE = 2 * 336 / (336 + 480)


def afma_probs(case: str, ref: np.ndarray) -> np.ndarray:
    labels = ref.copy()
    assert not labels[35:38, 2:5, 0:2].any()
    labels[35:38, 2:5, 0:2] = 1  # 18 spurious core voxels
    return probabilities(labels, p=0.9)


def sa2net_probs(case: str, ref: np.ndarray) -> np.ndarray:
    labels = ref.copy()
    rows = labels[24:27] == 2
    labels[24:27][rows] = 0  # 3 of the 10 rim rows missed: 144 of 480 voxels
    assert (labels == 2).sum() == 336 and (ref == 2).sum() == 480
    return probabilities(labels, p=0.8)


@pytest.fixture()
def cv_runs(tmp_path):
    ds = planned_blobs(tmp_path / "raw")
    runs = tmp_path / "runs"
    for name, probs in (("afma", afma_probs), ("sa2net", sa2net_probs)):
        for k in (0, 1):
            fake_fold_run(runs / name / f"fold_{k}", name, ds, k, probs)
    return ds, runs


def test_find_best_ranks_networks_ensembles_and_postprocessing(cv_runs, capsys):
    ds, runs = cv_runs
    doc = find_best(ds, runs)
    by_name = {r["configuration"]: r for r in doc["ranking"]}
    assert set(by_name) == {"afma", "sa2net", "afma + sa2net"}
    assert doc["protocol"] == "standard" and doc["metric"] == "dice" and doc["n_cases"] == 4 and doc["folds"] == [0, 1]

    afma, sa2net, both = by_name["afma"], by_name["sa2net"], by_name["afma + sa2net"]
    assert afma["score"] == pytest.approx((CORE_DICE + 1.0) / 2)
    assert afma["per_class"]["core"] == {"plain": pytest.approx(CORE_DICE), "keep_largest": pytest.approx(1.0)}
    assert afma["keep_largest"] == [1] and afma["keep_largest_names"] == ["core"]
    assert afma["final_score"] == pytest.approx(1.0)
    assert sa2net["score"] == pytest.approx((1.0 + RIM_DICE) / 2)
    assert sa2net["keep_largest"] == [] and sa2net["score_keep_largest"] is None  # one blob per class: nothing to gain
    assert both["score"] == pytest.approx(afma["score"]) and both["final_score"] == pytest.approx(1.0)
    assert [r["configuration"] for r in doc["ranking"]] == ["afma", "afma + sa2net", "sa2net"]

    best = json.loads((runs / "best.json").read_text())
    assert best["best"]["configuration"] == "afma"
    command = (f"svseg predict --bundle afma --checkpoint {runs / 'afma'} --input INPUT_FOLDER --output OUTPUT_FOLDER "
               "--keep-largest 1")
    assert best["best"]["predict_command"] == command
    text = (runs / "inference_instructions.txt").read_text()
    assert command in text and "core" in text

    # the CLI prints the table and the command
    out_dir = runs.parent / "fb"
    assert main(["find-best", str(ds), "--runs", str(runs), "--output", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    assert "afma + sa2net" in printed and "keep-largest" in printed and printed.strip().endswith("--keep-largest 1")
    assert (out_dir / "best.json").is_file() and (out_dir / "inference_instructions.txt").is_file()


def test_find_best_ensemble_command_and_fold_subset(cv_runs):
    """Restricted to fold 0 and to the ensemble's ingredients, the command names each fold's weights."""
    ds, runs = cv_runs
    doc = find_best(ds, runs, output_dir=runs.parent / "f0", folds=[0], networks=["sa2net"])
    assert [r["configuration"] for r in doc["ranking"]] == ["sa2net"] and doc["n_cases"] == 2
    assert doc["best"]["predict_command"] == (
        f"svseg predict --bundle sa2net --checkpoint {runs / 'sa2net' / 'fold_0' / 'models' / 'model.pt'} "
        "--input INPUT_FOLDER --output OUTPUT_FOLDER")
    with pytest.raises(ValueError, match="not found"):
        find_best(ds, runs, networks=["svanet"])


def test_find_best_refuses_missing_folds_and_other_classes(cv_runs, capsys):
    ds, runs = cv_runs
    shutil.rmtree(runs / "sa2net" / "fold_1")
    with pytest.raises(InputError, match=r"fold\(s\) 1 of network 'sa2net' missing"):
        find_best(ds, runs)
    out = runs.parent / "fb"
    assert main(["find-best", str(ds), "--runs", str(runs), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0] and not out.exists()

    fake_fold_run(runs / "sa2net" / "fold_1", "sa2net", ds, 1, sa2net_probs, class_names=["background", "a", "b"])
    with pytest.raises(InputError, match="predicts classes"):
        find_best(ds, runs)


def test_find_best_needs_a_planned_data_set(tmp_path):
    with pytest.raises(ValueError, match="planned"):
        find_best("demo", tmp_path)
    ds = planned_blobs(tmp_path / "raw")
    with pytest.raises(FileNotFoundError, match="no cross-validation predictions"):
        find_best(ds, tmp_path / "raw")

