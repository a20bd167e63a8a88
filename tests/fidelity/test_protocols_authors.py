"""svseg's paper protocols against the authors' own metric code, on the cases of tests/evaluation/test_protocols.py.

Set ``SVSEG_AUTHORS_DIR`` to a folder holding one checkout per repository (``SvANet``, ``UCTransNet``,
``Awesome-U-Net``, ``Multi-Scale-Attention``, ``AFMA``); each test skips, saying why, when its folder or
a library the authors' code needs is missing. Only imports and paths are patched (stub modules for
the authors' training-only imports, a working folder for hard-coded paths), never the math.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from svseg.evaluation import evaluate_case, summarize
from tests.evaluation.test_protocols import BINARY, THREE, absent_pair, empty, missed, single
from tests.fidelity.authors import authors_dir, load_file, stub

pytestmark = pytest.mark.fidelity

CASE_SETS = {
    "single+empty": ([single(), empty()], BINARY),
    "missed+single": ([missed(), single()], BINARY),
    "absent_class": (list(absent_pair()), THREE),
}


def ours(protocol, cases, names):
    rows = []
    for i, (pred, ref) in enumerate(cases):
        rows.extend(evaluate_case(pred, ref, names, protocol=protocol, case=f"c{i}"))
    return rows, summarize(rows, protocol)


def one_hot(labels: np.ndarray, n: int, order=None) -> torch.Tensor:
    """(B, n, H, W) float one-hot of label maps; ``order[c]`` is the channel of class ``c``."""
    order = list(range(n)) if order is None else order
    out = np.zeros((labels.shape[0], n) + labels.shape[1:], np.float32)
    for c in range(n):
        out[:, order[c]] = labels == c
    return torch.from_numpy(out)


@pytest.mark.parametrize("case_set", list(CASE_SETS))
def test_svanet_compute_metrics_and_tiny_table(isolated_imports, case_set):
    root = authors_dir("SvANet")
    mp = isolated_imports
    mp.syspath_prepend(str(root))
    logged = []
    for name in ("opts", "lib.data", "lib.trainer", "lib.params_init"):
        stub(mp, name, Opts=None, getMyDataset=None, Inferencer=None, segOptInit=None, initSegModelbyCSV=None)
    stub(mp, "lib.utils", getImgPath=None, getSetPath=None, getExpPath=None, getOnlyFileDirs=None,
         getKeepTinyIds=None, averageUniqueLog=None, writeCsv=lambda path, field, info: logged.append(dict(zip(field, info))))
    tiny_validation = load_file("authors_svanet_tiny", root / "tools" / "tinyObjectsValidation.py")
    cases, names = CASE_SETS[case_set]
    rows, summary = ours("svanet", cases, names)
    pred = one_hot(np.stack([p for p, _ in cases]).astype(np.int64), len(names))
    target = torch.from_numpy(np.stack([r for _, r in cases]).astype(np.int64))
    got = tiny_validation.computeMetrics(100, pred, target.clone(), np.arange(len(cases)), 1e-7)
    o = summary["overall"]
    want = [o["micro_iou"], o["micro_dice"], o["precision"], o["recall"], o["f2"], o["e_measure"]]
    assert [float(v) for v in got[:6]] == pytest.approx([100 * v for v in want], rel=1e-5)
    assert float(got[6]) == pytest.approx(o["mae"], rel=1e-5)
    ratios = np.asarray([r["size_pct"] for r in rows if r["label"] == 0])
    opt = SimpleNamespace(seg_model_name="m", seg_head_name="h", pretrained_weight="w.pth", seg_feature_guide=0,
                          fg_svattn=0, fg_vit=0, fg_nostage5=0, fg_link=0)
    kept = np.flatnonzero(ratios < 100)
    tiny_validation.traversalTinyRatio(opt, [0.5, 1, 2, 3, 5, 10, 100], ratios[kept], "exp1", pred[kept],
                                       target[kept].clone(), list(kept), "out.csv", 1e-7)
    assert [r["TinyRatio"] for r in logged] == [t["below_pct"] for t in summary["tiny_objects"]]
    for theirs, mine in zip(logged, summary["tiny_objects"]):
        assert float(theirs["mIoU"]) == pytest.approx(100 * mine["micro_iou"], rel=1e-5)
        assert float(theirs["mDice"]) == pytest.approx(100 * mine["micro_dice"], rel=1e-5)
        assert float(theirs["mEM"]) == pytest.approx(100 * mine["e_measure"], rel=1e-5)
        assert float(theirs["AvgF2Score"]) == pytest.approx(100 * mine["f2"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("case_set", list(CASE_SETS))
def test_uctransnet_show_image_with_dice(isolated_imports, case_set):
    root = authors_dir("UCTransNet")
    pytest.importorskip("sklearn", reason="UCTransNet's IoU is sklearn.metrics.jaccard_score")
    mp = isolated_imports
    mp.syspath_prepend(str(root))
    stub(mp, "cv2", imwrite=lambda *a, **k: True, pyrUp=lambda x, *a: x, resize=lambda x, *a: x)
    stub(mp, "Load_Dataset", ValGenerator=None, ImageToImage2D=None)
    stub(mp, "Config", task_name="GlaS")
    stub(mp, "nets")
    stub(mp, "nets.UCTransNet", UCTransNet=None)
    test_model = load_file("authors_uctransnet_test_model", root / "test_model.py")
    cases, names = CASE_SETS[case_set]
    rows, summary = ours("uctransnet", cases, names)
    for label in range(1, len(names)):
        dices, ious = [], []
        for pred, ref in cases:
            d, j = test_model.show_image_with_dice((pred == label).astype(np.float32), (ref == label).astype(np.float32),
                                                   save_path="unused.jpg")
            dices.append(d)
            ious.append(j)
        mine = [r for r in rows if r["label"] == label]
        assert [r["dice"] for r in mine] == pytest.approx(dices, rel=1e-6, abs=1e-7)
        assert [r["iou"] for r in mine] == pytest.approx(ious)
        assert summary["classes"][names[label]]["dice"] == pytest.approx(sum(dices) / len(cases), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("case_set", ["single+empty", "missed+single"])
def test_awesome_unet_metric_collection(isolated_imports, case_set):
    root = authors_dir("Awesome-U-Net")
    torchmetrics = pytest.importorskip("torchmetrics", reason="Awesome-U-Net's metrics are torchmetrics'")
    script = (root / "train_and_test" / "isic" / "unet-isic.py").read_text()
    block = re.search(r"metrics = torchmetrics\.MetricCollection\(.*?prefix='train_metrics/'\s*\)", script, re.S)
    assert block, "the MetricCollection of unet-isic.py was not found"
    namespace = {"torchmetrics": torchmetrics}
    try:
        exec(block.group(0), namespace)  # the authors' own construction (torchmetrics 0.10 API)
    except (TypeError, ValueError) as e:
        pytest.skip(f"torchmetrics {torchmetrics.__version__} lacks the 0.10 API the authors use: {e}")
    cases, names = CASE_SETS[case_set]
    _, summary = ours("awesome_unet", cases, names)
    evaluator = namespace["metrics"]
    for pred, ref in cases:  # one image per batch, as the test loader's last batches may be
        evaluator.update(torch.from_numpy(pred[None].astype(np.float32)), torch.from_numpy(ref[None].astype(np.int64)))
    got = {k.split("/")[-1]: float(v) for k, v in evaluator.compute().items()}
    mine = summary["classes"]["fg"]
    for theirs, key in (("Dice", "dice"), ("F1Score", "dice"), ("Accuracy", "accuracy"), ("Precision", "precision"),
                        ("Recall", "recall"), ("Specificity", "specificity"), ("JaccardIndex", "jaccard_index")):
        assert got[theirs] == pytest.approx(mine[key], rel=1e-6), theirs


@pytest.mark.parametrize("case_set", list(CASE_SETS))
def test_msga_evaluate3d(isolated_imports, tmp_path, case_set):
    root = authors_dir("Multi-Scale-Attention")
    pytest.importorskip("medpy", reason="MSGA's evaluate3D calls medpy.metric.binary.dc; medpy is not installed")
    mp = isolated_imports
    mp.syspath_prepend(str(root / "src"))
    missing = [root_name for root_name in ("skimage", "torchvision")  # imported by utils.py, unused by evaluate3D
               if root_name not in sys.modules and importlib.util.find_spec(root_name) is None]
    for name in ("skimage", "skimage.transform", "torchvision"):
        if name.split(".")[0] in missing:
            stub(mp, name, __path__=[])
    # the authors' load_nii calls get_data(), which raises since nibabel 5: give it back its old meaning
    mp.setattr(nib.Nifti1Image, "get_data", lambda self: np.asanyarray(self.dataobj), raising=False)
    package = stub(mp, "common")  # src/common has no __init__.py; utils.py imports .progressBar
    package.__path__ = [str(root / "src" / "common")]
    utils = importlib.import_module("common.utils")
    cases, names = CASE_SETS[case_set]
    five = names + [f"c{k}" for k in range(len(names), 5)]  # the authors score labels 1..4
    subjects = [(np.stack([p, p.T], -1), np.stack([r, r.T], -1)) for p, r in cases]
    mp.chdir(tmp_path)
    gt_dir, pred_dir = tmp_path / "DataSet_Challenge/GT_Nifti/Val_1", tmp_path / "Results/Images/m/Nifti"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir(parents=True)
    for i, (pred, ref) in enumerate(subjects):
        nib.save(nib.Nifti1Image(ref.astype(np.int16), np.eye(4)), str(gt_dir / f"Subj_{i}.nii"))
        nib.save(nib.Nifti1Image(pred.astype(np.int16), np.eye(4)), str(pred_dir / f"Subj_{i}.nii"))
    dsc = utils.evaluate3D("m")
    rows, summary = ours("msga", subjects, five)
    mine = np.array([[r["dice"] for r in rows if r["case"] == f"c{i}"] for i in range(len(subjects))])
    both_empty = np.array([[r["tp"] + r["fp"] + r["fn"] == 0 for r in rows if r["case"] == f"c{i}"]
                           for i in range(len(subjects))])
    # medpy <= 0.4 (MSGA's, 2020) returned 0 for two empty masks; 0.5 returns 1.0, or NaN under numpy 2
    # (no ZeroDivisionError from numpy integers). svseg keeps the authors' 0; compare the rest.
    assert np.all(mine[both_empty] == 0.0)
    assert mine[~both_empty] == pytest.approx(np.asarray(dsc)[~both_empty])
    if not both_empty.any():
        assert [summary["classes"][n]["dice"] for n in five[1:]] == pytest.approx(np.mean(dsc, 0).tolist())


@pytest.mark.parametrize("case_set", list(CASE_SETS) + ["all_background"])
def test_afma_epoch_run(isolated_imports, case_set):
    root = authors_dir("AFMA")
    mp = isolated_imports
    mp.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m == "utils" or m.startswith("utils.")]:
        mp.delitem(sys.modules, name)
    train = importlib.import_module("utils.train")

    class Replay(train.Epoch):
        """The authors' epoch loop over stored predictions: batch_update returns them as log-probabilities."""

        def batch_update(self, x, y):
            return torch.zeros(()), torch.log(x.clamp_min(1e-12))

    cases, names = CASE_SETS[case_set] if case_set in CASE_SETS else ([empty(), empty()], BINARY)
    n = len(names)
    order = [n - 1] + list(range(n - 1))  # AFMA's masks: the classes, then background as the last channel
    loader = [(one_hot(p[None].astype(np.int64), n, order), one_hot(r[None].astype(np.int64), n, order), "x")
              for p, r in cases]
    epoch = Replay(torch.nn.Identity(), torch.nn.Identity(), ["mean_iou_score", "global_iou_score", "accuracy"],
                   "valid", verbose=False)
    _, summary = ours("afma", cases, names)
    if case_set == "all_background":
        with pytest.raises(ZeroDivisionError):
            epoch.run(loader)
        assert summary["overall"]["mean_iou"] is None and summary["overall"]["n_classes_absent"] == 1
        return
    logs = epoch.run(loader)
    o = summary["overall"]
    assert logs["mean_iou_score"] == pytest.approx(o["mean_iou"])
    assert logs["global_iou_score"] == pytest.approx(o["global_iou"])
    assert logs["accuracy"] == pytest.approx(o["accuracy"])
    assert logs["category_IoU"] == pytest.approx([summary["classes"][c]["iou"] for c in names[1:]])
