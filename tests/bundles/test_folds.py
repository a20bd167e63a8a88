"""``svseg train --fold all`` / ``--bundle all``: which runs are made where, which are skipped, what is kept.

Training and prediction are replaced by recorders that write the files a real run leaves (placeholder
weights, ``svseg_model.json``, label maps), so the loop's bookkeeping is tested in a second; the real
networks train in tests/bundles/test_folds_e2e.py (slow). The data set is SYNTHETIC blobs, planned with
two folds.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import svseg.bundle.folds as folds
from svseg.bundle import bundle_names, input_cases, input_files, train_runs
from svseg.bundle.folds import run_folders
from svseg.cli import main
from tests.bundles.cv_data import CLASSES, planned_blobs


@pytest.fixture()
def recorded(monkeypatch):
    calls = {"train": [], "predict": []}

    def train(bundle, config_files, **override):
        run = Path(override["output_dir"])
        calls["train"].append((bundle, override.get("fold"), run))
        (run / "models").mkdir(parents=True, exist_ok=True)
        (run / "models" / "model.pt").write_bytes(b"placeholder weights")
        info = {"network": "X", "dataset_name": override.get("dataset_name"), "class_names": CLASSES,
                "fold": override.get("fold", 0)}
        (run / "models" / "svseg_model.json").write_text(json.dumps(info))
        return run

    def predict(bundle, input_path, output_dir, checkpoint=None, device="auto", overrides=None,
                save_probabilities=False, **kwargs):
        staged = sorted(p.name for p in Path(input_path).iterdir())
        calls["predict"].append((bundle, Path(checkpoint), staged, dict(overrides), save_probabilities))
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        written = []
        for case, _ in input_cases(input_files(input_path)):
            (Path(output_dir) / f"{case}_seg.nii.gz").write_bytes(b"label map")
            written.append(Path(output_dir) / f"{case}_seg.nii.gz")
        return written

    monkeypatch.setattr(folds, "train", train)
    monkeypatch.setattr(folds, "predict", predict)
    return calls


def test_fold_all_trains_each_fold_then_skips_finished_ones(tmp_path, recorded):
    ds = planned_blobs(tmp_path / "raw")
    out = tmp_path / "runs"
    common = {"dataset_name": str(ds), "output_dir": str(out), "max_epochs": 1, "network_def#features": 16}
    runs = train_runs(["sa2net"], "all", **common)
    assert runs == [out / "fold_0", out / "fold_1"]
    assert [(b, k) for b, k, _ in recorded["train"]] == [("sa2net", 0), ("sa2net", 1)]

    # fold 0's validation cases, staged with nnU-Net channel names, predicted with the fold's weights
    bundle, ckpt, staged, overrides, probs = recorded["predict"][0]
    assert ckpt == out / "fold_0" / "models" / "model.pt" and probs is True
    assert staged == ["blob_000_0000.nii.gz", "blob_001_0000.nii.gz"]
    assert overrides == {"network_def#features": 16, "inputs_prepared": False}  # max_epochs is training only
    marker = json.loads((out / "fold_0" / "validation" / "predictions.json").read_text())
    assert marker["cases"] == ["blob_000", "blob_001"] and marker["fold"] == 0 and marker["bundle"] == "sa2net"
    assert marker["dataset_name"] == str(ds) and marker["label_maps"] == ["blob_000_seg.nii.gz", "blob_001_seg.nii.gz"]
    info = json.loads((out / "fold_1" / "models" / "svseg_model.json").read_text())
    assert info["bundle_overrides"] == {"network_def#features": 16}

    recorded["train"].clear()
    assert train_runs(["sa2net"], "all", **common) == runs
    assert recorded["train"] == []  # both finished: skipped

    (out / "fold_1" / "validation" / "predictions.json").unlink()  # fold 1 killed before its predictions
    train_runs(["sa2net"], "all", **common)
    assert [(b, k) for b, k, _ in recorded["train"]] == [("sa2net", 1)]

    recorded["train"].clear()
    train_runs(["sa2net"], "all", **{**common, "max_epochs": 2})  # asked for more: both folds go on (resume)
    assert [k for _, k, _ in recorded["train"]] == [0, 1]
    train_runs(["sa2net"], "all", **{**common, "max_epochs": 2, "device": "cpu"})  # the device is no new request
    assert len(recorded["train"]) == 2

    recorded["train"].clear()
    train_runs(["sa2net"], "all", **common, resume=False)  # start anew: nothing is skipped
    assert [k for _, k, _ in recorded["train"]] == [0, 1]


def test_several_bundles_and_the_cli(tmp_path, recorded, capsys):
    ds = planned_blobs(tmp_path / "raw")
    out = tmp_path / "runs"
    assert main(["train", "--bundle", "sa2net", "afma", "--dataset", str(ds), "--fold", "1", "--output", str(out),
                 "--max-epochs", "1"]) == 0
    assert [(b, k, r) for b, k, r in recorded["train"]] == [("sa2net", 1, out / "sa2net"), ("afma", 1, out / "afma")]
    assert capsys.readouterr().out.splitlines()[-2:] == [f"trained {out / 'sa2net'}", f"trained {out / 'afma'}"]
    assert (out / "afma" / "validation" / "predictions.json").is_file()

    layout = run_folders(["all"], "all", tmp_path / "x", dataset=str(ds))
    assert [(b, r) for b, _, r in layout][:2] == [(bundle_names()[0], tmp_path / "x" / bundle_names()[0] / "fold_0"),
                                                  (bundle_names()[0], tmp_path / "x" / bundle_names()[0] / "fold_1")]
    assert len(layout) == 2 * len(bundle_names()) == 10


def test_refusals_before_any_training(tmp_path, recorded):
    with pytest.raises(ValueError, match="--fold all needs a data set folder planned"):
        train_runs(["sa2net"], "all", dataset_name="demo", output_dir=str(tmp_path / "r"))
    with pytest.raises(FileNotFoundError, match="bundle 'nonet' not found"):
        train_runs(["sa2net", "nonet"], 0, dataset_name="demo")
    with pytest.raises(FileNotFoundError, match="has no configs/nope.json"):
        train_runs(["sa2net"], 0, ("train.json", "nope.json"), dataset_name="demo")
    assert recorded["train"] == [] and not (tmp_path / "r").exists()


def test_a_named_data_set_keeps_no_cv_predictions(tmp_path, recorded):
    run = tmp_path / "r"
    train_runs(["sa2net"], None, dataset_name="demo", output_dir=str(run))
    assert [(b, k) for b, k, _ in recorded["train"]] == [("sa2net", None)] and recorded["predict"] == []
    assert not (run / "validation").exists()


def test_fast_mode_and_compile_are_not_carried_into_a_model():
    """How a training ran (bf16 autocast, torch.compile) is not what its network is: a model trained with --fast
    or --compile predicts in plain fp32 unless asked again (a bf16 training machine's flag would make prediction
    refuse on a CPU without bf16)."""
    from svseg.bundle.folds import inference_overrides

    kept = inference_overrides("sa2net", {"network_def#features": 16, "fast_mode": True, "compile": True,
                                          "device": "cpu"})
    assert kept == {"network_def#features": 16}
