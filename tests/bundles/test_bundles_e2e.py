"""End-to-end CPU runs of every bundle on the tiny demo data (slow).

Real data: the tiny (4 mm) svseg demo set (MNI152 grey/white matter from nilearn). Networks are
run at 64x64 and, where large, at reduced width (``util.TINY``); the schedule is one epoch of
two iterations: these tests check that the bundle machinery works, not accuracy.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.bundles.util import NAMES, TINY, bundle_cmd, read_json, run


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory) -> Path:
    from svseg.data.demo import prepare_demo

    return Path(prepare_demo(tmp_path_factory.mktemp("demo_tiny"), tiny=True))


def _build_network(name: str, tiny: dict, data: dict):
    """The bundle's network_def with the same overrides, built in this process."""
    from monai.bundle import ConfigParser

    from tests.bundles.util import BUNDLES

    parser = ConfigParser()
    parser.read_config([str(BUNDLES / name / "configs" / "train.json")])
    parser["bundle_root"] = str(BUNDLES / name)
    for k, v in {**tiny, **data}.items():
        parser[k] = eval(v) if isinstance(v, str) and v[:1] in "[0123456789" else v
    return parser.get_parsed_content("network_def")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_bundle_train_evaluate_infer_verify_export(name, tiny_demo, tmp_path):
    out = tmp_path / "run"
    data = {"dataset_name": "demo", "data_root": str(tiny_demo)}
    common = {**data, **TINY[name], "output_dir": str(out), "device": "cpu"}

    # training, 1 epoch of 2 iterations at batch 2 (validation at the last epoch writes model.pt)
    run(bundle_cmd("run", name, ["train.json"], "training", **common, max_epochs=1, batch_size=2,
                   **{"train#epoch_length": 2, "num_workers": 0}))
    ckpt = out / "models" / "model.pt"
    assert ckpt.is_file() and (out / "checkpoint_latest.pt").is_file()

    # evaluating: 3D metrics per test case and class
    run(bundle_cmd("run", name, ["train.json", "evaluate.json"], "evaluating", **common))
    import pandas as pd

    metrics = pd.read_csv(out / "metrics.csv")
    n_test = len(read_json(tiny_demo / "dataset.json")["test"])
    assert len(metrics) == n_test * 2 and {"case", "class", "dice", "hd95"} <= set(metrics.columns)
    assert np.isfinite(metrics["dice"]).all()
    assert (out / "summary.json").is_file()

    # inference.json: one NIfTI label map per test volume, same grid as the input
    pred_dir = tmp_path / "pred"
    run(bundle_cmd("run", name, ["inference.json"], "run", **common, prediction_dir=str(pred_dir)))
    import nibabel as nib

    preds = sorted(pred_dir.glob("*_seg.nii.gz"))
    assert len(preds) == n_test
    test_items = read_json(tiny_demo / "dataset.json")["test"]
    ref = nib.load(str(tiny_demo / test_items[0]["image"]))
    got = nib.load(str(pred_dir / f"{test_items[0]['case']}_seg.nii.gz"))
    assert got.shape == ref.shape[:3] and np.allclose(got.affine, ref.affine, atol=1e-4)
    assert set(np.unique(np.asarray(got.dataobj))) <= {0, 1, 2}

    # ckpt_export: TorchScript (trace) that loads and reproduces the eager network
    ts = tmp_path / "model.ts"
    run(bundle_cmd("ckpt_export", name, ["train.json"], "network_def", **data, **TINY[name], filepath=str(ts),
                   ckpt_file=str(ckpt), use_trace="True", input_shape="[1,1,64,64]"))
    scripted = torch.jit.load(str(ts), map_location="cpu")
    net = _build_network(name, TINY[name], data)
    state = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    net.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_verify_net_in_out_with_the_documented_command(name):
    """The model zoo's CI check, exactly as each bundle README documents it: no overrides at all."""
    run(bundle_cmd("verify_net_in_out", name, ["train.json"], "network_def"))
