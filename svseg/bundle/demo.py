"""The svseg demo: train the MSA2Net bundle on the demo data and evaluate it in 3D.

Steps: prepare the demo data (MNI152 grey/white matter from nilearn, offline), run the msa2net
bundle's ``training`` with the demo override (``bundles/msa2net/configs/demo.json``: AdamW 1e-3,
144 iterations at batch 4, 224x224), then its ``evaluating`` on the held-out test slabs, and print
the mean 3D Dice per class and the wall time.

Usage::

    svseg demo                         # the CLI calls run_demo()

The paper recipe (SGD 0.05, 700 epochs) stays the bundle default; it needs far more than the
demo's 144 iterations (on MNI152 slices it reached only 0.63 / 0.54 Dice in that budget).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from svseg.bundle.run import run_bundle
from svseg.data import prepare_demo

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)


def run_demo(output_dir: str | os.PathLike = "outputs/demo", data_dir: str | os.PathLike | None = None,
             tiny: bool = False, device: str = "cpu", max_iterations: int | None = None,
             num_threads: int | None = None, bundle: str = "msa2net", fast: bool = False) -> dict:
    """Prepare the demo data, train the bundle with its demo override, evaluate, print Dice and time.

    Args:
        output_dir: where checkpoints, ``metrics.csv`` and ``summary.json`` go.
        data_dir: demo data folder (default ``$SVSEG_DATA_DIR/demo``); prepared if absent.
        tiny: use the 4 mm demo set (for tests; the 0.80 Dice target applies to the full set).
        device: ``cpu``, ``cuda`` or ``auto``.
        max_iterations: override the demo's 144 training iterations (rounded to whole epochs of 36).
        num_threads: torch CPU threads (default: torch's own choice).
        bundle: bundle folder name (``msa2net``; other bundles need their own ``demo.json``).
        fast: train and evaluate in the opt-in fast mode (``fast_mode=true``: bf16 autocast).

    Returns:
        The evaluation summary (``summary.json`` contents) with ``wall_time_s`` added.
    """
    if num_threads:
        torch.set_num_threads(int(num_threads))
    t0 = time.perf_counter()
    output_dir = str(Path(output_dir).expanduser().absolute())
    root = prepare_demo(data_dir, tiny=tiny)
    t_data = time.perf_counter() - t0
    override: dict[str, Any] = {"dataset_name": "demo", "data_root": str(root), "output_dir": output_dir,
                                "device": device, "fast_mode": bool(fast)}
    if max_iterations is not None:
        per_epoch = 36
        epochs = max(1, -(-int(max_iterations) // per_epoch))
        override.update({"max_epochs": epochs, "train#epoch_length": min(per_epoch, int(max_iterations))})
    run_bundle("training", bundle, ("train.json", "demo.json"), **override)
    t_train = time.perf_counter() - t0 - t_data
    run_bundle("evaluating", bundle, ("train.json", "demo.json", "evaluate.json"), save_predictions=True, **override)
    wall = time.perf_counter() - t0
    with open(os.path.join(output_dir, "summary.json")) as f:
        summary = json.load(f)
    summary["wall_time_s"] = wall
    per_class = _mean_dice_per_class(os.path.join(output_dir, "metrics.csv"))
    print(f"svseg demo ({bundle}, {'tiny ' if tiny else ''}demo data, device {device}{', fast mode' if fast else ''})")
    for name, dice in per_class.items():
        print(f"  mean 3D Dice {name:<14s} {dice:.3f}")
    mean = sum(per_class.values()) / max(len(per_class), 1)
    print(f"  mean 3D Dice (all classes) {mean:.3f}")
    print(f"  wall time {wall:.0f} s (data {t_data:.0f} s, training {t_train:.0f} s, "
          f"evaluation {wall - t_data - t_train:.0f} s); results in {output_dir}")
    summary["mean_dice_per_class"] = per_class
    return summary


def _mean_dice_per_class(metrics_csv: str) -> dict[str, float]:
    df = pd.read_csv(metrics_csv)
    return {str(k): float(v) for k, v in df.groupby("class", sort=False)["dice"].mean().items()}
