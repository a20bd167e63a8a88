"""Saved probabilities and ensembles: the average is the hand-computed mean, bad ensembles are refused.

All volumes and probabilities here are SYNTHETIC (a few voxels with hand-chosen numbers, or a bright
box thresholded by a stand-in network); the real networks run in tests/bundles/test_folds_e2e.py (slow).
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from svseg.bundle import ensemble_folders, predict_models, resolve_models, run_checkpoints
from svseg.bundle.ensemble import keep_largest_ids
from svseg.cli import main
from svseg.errors import InputError
from svseg.inference import PredictionSaver, VolumeSliceInferer, write_nifti, write_probabilities
from svseg.inference.writer import probability_header, read_probabilities
from tests.bundles.cv_data import planned_blobs
from tests.bundles.util import BUNDLES, NAMES

NAMES3 = ["background", "core", "rim"]
AFFINE = np.array([[0.8, 0, 0, 10.0], [0, 0.8, 0, -4.0], [0, 0, 3.0, 2.5], [0, 0, 0, 1]])


def member(folder, probs, names=NAMES3, case="c0", reference=None, dtype="float32"):
    """A prediction folder as svseg predict --save-probabilities leaves it: <case>.npz and <case>_seg.nii.gz."""
    write_probabilities(probs, folder / f"{case}.npz", names, dtype=dtype)
    if reference is not None:
        write_nifti(np.argmax(probs, axis=0).astype(np.uint8), reference, folder / f"{case}_seg.nii.gz")
    return folder


@pytest.fixture()
def image(tmp_path):
    path = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 3, 2), np.float32), AFFINE), str(path))
    return path


def filled(default):
    return np.broadcast_to(np.asarray(default, np.float32)[:, None, None, None], (3, 4, 3, 2)).copy()


def test_ensemble_is_the_hand_computed_mean(tmp_path, image):
    a, b = filled([0.7, 0.2, 0.1]), filled([0.6, 0.3, 0.1])
    a[:, 0, 0, 0], b[:, 0, 0, 0] = [0.1, 0.5, 0.4], [0.2, 0.2, 0.6]  # mean [0.15, 0.35, 0.50] -> rim
    a[:, 1, 0, 0], b[:, 1, 0, 0] = [0.1, 0.8, 0.1], [0.3, 0.1, 0.6]  # mean [0.20, 0.45, 0.35] -> core
    fa = member(tmp_path / "a", a, reference=image)
    fb = member(tmp_path / "b", b)
    out = tmp_path / "out"
    written = ensemble_folders([fa, fb], out, save_probabilities=True, probability_dtype="float32")
    assert written == [out / "c0_seg.nii.gz"]

    mean, names = read_probabilities(out / "c0.npz")
    assert names == NAMES3 and mean.shape == (3, 4, 3, 2)
    np.testing.assert_allclose(mean[:, 0, 0, 0], [0.15, 0.35, 0.50], atol=1e-7)
    np.testing.assert_allclose(mean[:, 1, 0, 0], [0.20, 0.45, 0.35], atol=1e-7)
    np.testing.assert_allclose(mean[:, 3, 2, 1], [0.65, 0.25, 0.10], atol=1e-7)

    seg = nib.load(str(written[0]))
    labels = np.asarray(seg.dataobj)
    assert labels[0, 0, 0] == 2 and labels[1, 0, 0] == 1  # neither model alone says both
    assert (labels != 0).sum() == 2
    np.testing.assert_allclose(seg.affine, AFFINE)
    assert (out / "c0_statistics.json").is_file()

    # three members: the mean of three, not of pairs
    c = filled([0.5, 0.25, 0.25])
    c[:, 0, 0, 0] = [0.9, 0.05, 0.05]  # with a and b: [1.2, 0.75, 1.05] / 3 = [0.40, 0.25, 0.35] -> background
    fc = member(tmp_path / "c", c)
    out3 = tmp_path / "out3"
    ensemble_folders([fa, fb, fc], out3, save_probabilities=True, probability_dtype="float32")
    mean3, _ = read_probabilities(out3 / "c0.npz")
    np.testing.assert_allclose(mean3[:, 0, 0, 0], [0.40, 0.25, 0.35], atol=1e-7)
    assert np.asarray(nib.load(str(out3 / "c0_seg.nii.gz")).dataobj)[0, 0, 0] == 0


def test_ensemble_refuses_other_classes_and_missing_cases(tmp_path, image, capsys):
    fa = member(tmp_path / "a", filled([0.7, 0.2, 0.1]), reference=image)
    four = member(tmp_path / "four", np.full((4, 4, 3, 2), 0.25, np.float32), names=NAMES3 + ["extra"])
    renamed = member(tmp_path / "renamed", filled([0.7, 0.2, 0.1]), names=["background", "liver", "tumour"])
    other_case = member(tmp_path / "other", filled([0.7, 0.2, 0.1]), case="c1")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="4 classes .* same classes"):
        ensemble_folders([fa, four], out)
    with pytest.raises(InputError, match="liver.* same classes"):
        ensemble_folders([fa, renamed], out)
    with pytest.raises(InputError, match="c0.npz: missing"):
        ensemble_folders([fa, other_case], out)
    assert not out.exists()
    assert main(["ensemble", "--input", str(fa), str(four), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("svseg ensemble: error: c0.npz: holds 4 classes") and not out.exists()


def test_keep_largest_after_the_average(tmp_path, image):
    labels = np.zeros((4, 3, 2), np.uint8)
    labels[0:2, 0:2, :] = 1  # 8 voxels of core
    labels[3, 2, 1] = 1  # and a stray one
    probs = np.zeros((3, 4, 3, 2), np.float32)
    np.put_along_axis(probs, labels[None].astype(np.int64), 1.0, axis=0)
    fa = member(tmp_path / "a", probs, reference=image)
    assert keep_largest_ids(["core", 2], NAMES3) == [1, 2]
    with pytest.raises(ValueError, match="not a foreground class .* core, rim"):
        keep_largest_ids(["liver"], NAMES3)
    (written,) = ensemble_folders([fa], tmp_path / "out", keep_largest_classes=["core"])
    kept = np.asarray(nib.load(str(written)).dataobj)
    assert kept.sum() == 8 and kept[3, 2, 1] == 0


def test_prediction_saver_writes_probabilities_that_match_the_label_map(tmp_path):
    """SYNTHETIC bright box; a stand-in network; MONAI's Orientationd turns the array, the writers turn it back."""
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator
    from monai.transforms import Activationsd, AsDiscreted, Compose, CopyItemsd, EnsureTyped, Orientationd

    from svseg.data import LoadVolumed

    img_dir, out = tmp_path / "img", tmp_path / "pred"
    img_dir.mkdir()
    vol = np.zeros((12, 10, 3), np.float32)
    vol[2:7, 1:4, :] = 1.0
    nib.save(nib.Nifti1Image(vol, AFFINE), str(img_dir / "c0.nii.gz"))

    class Threshold(torch.nn.Module):
        def forward(self, x):
            return torch.cat([2.0 * (0.5 - x), 2.0 * (x - 0.5)], dim=1)

    pre = Compose([LoadVolumed(["image"]), EnsureTyped("image", dtype=torch.float32),
                   Orientationd("image", axcodes="LPS")])
    post = Compose([Activationsd("pred", softmax=True), CopyItemsd("pred", names="prob"),
                    AsDiscreted("pred", argmax=True)])
    saver = PredictionSaver(out, postfix="_seg", probabilities=True, class_names=["bg", "box"],
                            probability_dtype="float32")
    SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=DataLoader(Dataset([{"image": str(img_dir / "c0.nii.gz")}], pre)),
                        network=Threshold(), inferer=VolumeSliceInferer(roi_size=(12, 10), batch_size=3),
                        postprocessing=post, val_handlers=[saver]).run()
    probs, names = read_probabilities(out / "c0.npz")
    labels = np.asarray(nib.load(str(out / "c0_seg.nii.gz")).dataobj)
    assert names == ["bg", "box"] and probs.shape == (2, 12, 10, 3)
    assert probability_header(out / "c0.npz") == ((2, 12, 10, 3), ["bg", "box"])
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.argmax(probs, axis=0), labels)
    np.testing.assert_array_equal(labels, (vol > 0.5).astype(np.uint8))  # back in the file's orientation
    np.testing.assert_allclose(probs[1, 3, 2, 0], 1 / (1 + np.exp(-2.0)), rtol=1e-5)  # softmax of (-1, +1)
    with pytest.raises(ValueError, match="probability_dtype"):
        PredictionSaver(out, probabilities=True, probability_dtype="int8")


@pytest.mark.parametrize("name", NAMES)
def test_inference_json_switches(name, monkeypatch):
    """The bundles' inference.json: probabilities, keep-largest and TTA are off by default and switched on by name;
    the progress bar over cases is drawn on a terminal (SVSEG_PROGRESS forces it)."""
    from ignite.handlers import ProgressBar
    from monai.bundle import ConfigParser

    for flag, drawn in (("1", True), ("0", False)):
        monkeypatch.setenv("SVSEG_PROGRESS", flag)
        parser = ConfigParser()
        parser.read_config(str(BUNDLES / name / "configs" / "inference.json"))
        assert isinstance(parser.get_parsed_content("handlers#2"), ProgressBar) is drawn

    def parsed(**override):
        parser = ConfigParser()
        parser.read_config(str(BUNDLES / name / "configs" / "inference.json"))
        parser.update({"dataset_name": "demo", "bundle_root": str(BUNDLES / name), "roi_size": [64, 64], **override})
        post = parser.get_parsed_content("postprocessing")
        return [type(t).__name__ for t in post.transforms], parser.get_parsed_content("inferer").tta

    assert parsed() == (["AsDiscreted"], False)
    assert parsed(save_probabilities=True, keep_largest=[1], tta=True) == (
        ["Activationsd", "CopyItemsd", "AsDiscreted", "Lambdad"], True)


def test_run_folders_stand_for_their_folds(tmp_path, image, capsys):
    ds = planned_blobs(tmp_path / "raw", n_cases=6, n_folds=3)
    runs = tmp_path / "runs"
    for k in (0, 1):
        (runs / f"fold_{k}" / "models").mkdir(parents=True)
        (runs / f"fold_{k}" / "models" / "model.pt").write_bytes(b"placeholder")
        (runs / f"fold_{k}" / "models" / "svseg_model.json").write_text(json.dumps(
            {"dataset_name": str(ds), "class_names": NAMES3, "fold": k}))
    with pytest.raises(InputError, match=r"fold\(s\) 2 missing .* 3 folds"):
        run_checkpoints(runs)
    out = tmp_path / "pred"
    assert main(["predict", "--bundle", "sa2net", "--checkpoint", str(runs), "--input", str(image), "--output",
                 str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "runs: fold(s) 2 missing" in err[0] and not out.exists()
    (runs / "fold_2" / "models").mkdir(parents=True)
    with pytest.raises(InputError, match=r"fold\(s\) 2 missing"):  # a fold folder without weights
        run_checkpoints(runs)
    (runs / "fold_2" / "models" / "model.pt").write_bytes(b"placeholder")
    assert run_checkpoints(runs) == [runs / f"fold_{k}" / "models" / "model.pt" for k in range(3)]
    assert run_checkpoints(runs / "fold_1") == [runs / "fold_1" / "models" / "model.pt"]
    assert resolve_models("sa2net", runs) == [("sa2net", runs / f"fold_{k}" / "models" / "model.pt") for k in range(3)]
    models = resolve_models(["sa2net", "afma"], [runs / "fold_0", runs / "fold_1" / "models" / "model.pt"])
    assert [b for b, _ in models] == ["sa2net", "afma"]
    with pytest.raises(ValueError, match="one --bundle per entry"):
        resolve_models(["sa2net", "afma"], [runs / "fold_0", runs / "fold_1", runs / "fold_2"])
    with pytest.raises(InputError, match="neither models/model.pt nor fold_"):
        run_checkpoints(tmp_path / "raw")


def test_predict_refuses_an_ensemble_of_other_classes_before_writing(tmp_path, image, capsys):
    weights = []
    for name, classes in (("a", NAMES3), ("b", ["background", "liver"])):
        (tmp_path / name / "models").mkdir(parents=True)
        (tmp_path / name / "models" / "model.pt").write_bytes(b"placeholder")
        (tmp_path / name / "models" / "svseg_model.json").write_text(json.dumps(
            {"network": "SA2Net", "dataset_name": "demo", "class_names": classes, "in_channels": 1}))
        weights.append(tmp_path / name)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"predicts 2 classes \['background', 'liver'\], but .* predicts 3"):
        predict_models(["sa2net"], image, out, checkpoints=weights, device="cpu")
    assert not out.exists()
    rc = main(["predict", "--bundle", "sa2net", "--checkpoint", *map(str, weights), "--input", str(image),
               "--output", str(out), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "model.pt: predicts 2 classes" in err[0] and not out.exists()
