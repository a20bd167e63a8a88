"""2D image files and multi-channel cases through the loaders the bundles use (SYNTHETIC images).

``LoadVolumed`` / ``SliceDataset`` read an images/ + masks/ pair as one 2D sample per image, masks by the
mask rule; nnU-Net's per-channel files (``_0000``, ``_0001``) load as one multi-channel image; the
inferer runs a 2D network on a 2D item directly; the prediction of a 2D item is written as a PNG of ids.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from svseg.bundle import input_cases
from svseg.data import Image2DReader, LoadVolumed, SliceDataset, check_case
from svseg.inference import VolumeSliceInferer
from svseg.inference.writer import write_label_png
from svseg.io import read_image_2d
from tests.data.own_layouts import write_image_folder


def test_slice_dataset_over_2d_images(tmp_path):
    root = write_image_folder(tmp_path, n=3, size=(32, 40), rgb=True)
    items = [{"image": str(root / "images" / f"img{i:02d}.png"), "label": str(root / "masks" / f"img{i:02d}.png"),
              "case": f"img{i:02d}"} for i in range(3)]
    ds = SliceDataset(items)
    assert len(ds) == 3  # one sample per image, not one per colour channel
    sample = ds[1]
    assert tuple(sample["image"].shape) == (3, 32, 40) and tuple(sample["label"].shape) == (1, 32, 40)
    # the 0/255 mask arrives as class 1, in row/column order (rows 5..14, columns 6..19)
    lab = sample["label"][0].numpy()
    assert set(np.unique(lab).tolist()) == {0.0, 1.0}
    assert lab[5:15, 6:20].all() and lab.sum() == 10 * 14
    # the grey channel of the synthetic image is bright where the mask is
    assert sample["image"][0][lab > 0].mean() > sample["image"][0][lab == 0].mean() + 60


def test_load_volumed_stacks_channel_files(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for c in range(2):
        arr = rng.normal(size=(12, 10, 4)).astype(np.float32) + 100 * c
        files.append(tmp_path / f"case_{c:04d}.nii.gz")
        nib.save(nib.Nifti1Image(arr, np.eye(4)), files[-1])
    label = tmp_path / "case.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 4), np.uint8), np.eye(4)), label)
    item = {"image": [str(f) for f in files], "label": str(label)}
    out = LoadVolumed(["image", "label"])(item)
    assert tuple(out["image"].shape) == (2, 12, 10, 4)
    assert float(out["image"][1].mean()) > 90 > float(out["image"][0].mean())
    assert check_case(item["image"], item["label"], num_classes=2, in_channels=2)["channels"] == 2
    assert input_cases(files) == [("case", [str(f) for f in files])]


def test_image2d_reader_stacks_and_flags_2d(tmp_path):
    for c in range(3):
        Image.fromarray(np.full((6, 7), 10 * c, np.uint8)).save(tmp_path / f"x_{c:04d}.png")
    arr, meta = Image2DReader().get_data([str(tmp_path / f"x_{c:04d}.png") for c in range(3)])
    assert arr.shape == (3, 6, 7) and arr[2, 0, 0] == 20
    assert meta["image_2d"] is True and meta["original_channel_dim"] == 0


def test_2d_item_through_the_slice_inferer_and_back_to_png(tmp_path):
    """A (B, C, H, W) item runs the 2D network once at the ROI and comes back at the image size."""
    calls = []

    def network(x):
        calls.append(tuple(x.shape))
        logits = torch.zeros(x.shape[0], 3, *x.shape[2:])
        logits[:, 2] = x[:, 0]  # class 2 wherever the input is positive
        return logits

    image = torch.zeros(1, 1, 30, 50)
    image[0, 0, 10:20, 5:45] = 1.0
    scores = VolumeSliceInferer(roi_size=(64, 64))(image, network)
    assert calls == [(1, 1, 64, 64)]
    assert tuple(scores.shape) == (1, 3, 30, 50)
    labels = scores.argmax(1)[0]
    write_label_png(labels, tmp_path / "case_seg.png")
    back = read_image_2d(tmp_path / "case_seg.png", mask=True)[0]
    assert np.array_equal(back, labels.numpy()) and back[15, 25] == 2 and back[0, 0] == 0
