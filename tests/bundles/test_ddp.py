"""Two-process DDP training of a bundle on CPU (gloo), launched with torchrun as a user would (slow).

Real data: the tiny svseg demo set. SA2-Net at 64x64 with 16 base channels keeps it quick.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from tests.bundles.util import BUNDLES, REPO, configs, run

NAME = "sa2net"


@pytest.mark.slow
def test_torchrun_two_ranks_gloo_disjoint_data_and_loadable_weights(tmp_path):
    from svseg.data.demo import prepare_demo

    data = prepare_demo(tmp_path / "demo_tiny", tiny=True)
    out = tmp_path / "ddp"
    extra = tmp_path / "record.json"  # test-only: add a recorder of consumed samples to every rank
    extra.write_text(json.dumps({
        "recorder": {"_target_": "tests.bundles.recorder.BatchRecorder", "output_dir": "@output_dir"},
        "train#trainer#train_handlers": "$training.rank_zero_handlers(@train#handlers) + [@recorder]",
    }))
    cfg = configs(NAME, "train.json", "multi_gpu_train.json")[:-1] + f",'{extra}']"
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    cmd = torchrun + ["--nproc_per_node=2", "--master_port=29533", "-m", "monai.bundle", "run", "training",
                      "--meta_file", str(BUNDLES / NAME / "configs" / "metadata.json"), "--config_file", cfg,
                      "--logging_file", str(BUNDLES / NAME / "configs" / "logging.conf"),
                      "--bundle_root", str(BUNDLES / NAME), "--dataset_name", "demo", "--data_root", str(data),
                      "--output_dir", str(out), "--roi_size", "[64,64]", "--network_def#features", "16",
                      "--max_epochs", "2", "--batch_size", "2", "--num_workers", "0"]
    run(cmd, timeout=900)

    recs = [json.loads((out / f"samples_rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in recs] == [2, 2]
    for epoch in (1, 2):
        seen = [{(c, s) for e, c, s in r["samples"] if e == epoch} for r in recs]
        assert seen[0] and seen[1], "both ranks must train"
        assert not (seen[0] & seen[1]), f"epoch {epoch}: the two ranks saw overlapping slices"
        n0 = sum(1 for e, *_ in recs[0]["samples"] if e == epoch)
        assert n0 == len(seen[0]), "a rank saw the same slice twice in one epoch"

    # rank 0 saved the weights (unwrapped from DDP): they load strictly into a plain network
    from svseg.networks import SA2Net

    net = SA2Net(spatial_dims=2, in_channels=1, out_channels=3, features=16)
    state = torch.load(str(out / "models" / "model.pt"), map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    latest = torch.load(str(out / "checkpoint_latest.pt"), map_location="cpu", weights_only=False)
    assert isinstance(latest, dict)
