"""Small seeded weights that ``svseg predict`` runs through a bundle, shared by the prediction tests."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from monai.networks.nets import UNet

from svseg.bundle import MODEL_INFO_NAME

#: a small MONAI UNet swapped into the msa2net bundle by override (the prediction plumbing is the same)
SMALL_NET = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 3,
             "channels": [8, 16], "strides": [2], "num_res_units": 1}
DEMO_CLASSES = ["background", "grey matter", "white matter"]


def save_small_weights(folder: Path) -> Path:
    """Save seeded, untrained :data:`SMALL_NET` weights as ``folder/model.pt``, with the ``svseg_model.json``
    an svseg training run writes beside them (demo data set: its intensity rule and class names)."""
    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=3, channels=[8, 16], strides=[2], num_res_units=1)
    path = Path(folder) / "model.pt"
    torch.save(net.state_dict(), path)
    (path.parent / MODEL_INFO_NAME).write_text(json.dumps({
        "network": "UNet", "dataset_name": "demo", "class_names": DEMO_CLASSES, "intensity_mean": 0.5,
        "intensity_std": 0.5, "roi_size": [64, 64]}))
    return path
