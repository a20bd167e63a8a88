"""Each paper's published data layout end to end (slow suite), with only the documented commands:

layout folder -> ``svseg prepare <layout>`` -> ``svseg train --bundle <the paper's bundle> --dataset <out>
--max-epochs 1`` -> ``svseg predict`` on the converted test split -> ``svseg evaluate --protocol <paper>``.

The UCTransNet layout holds REAL data: the DSB2018 nuclei image of the stardist wheel
(``tests/data/own_layouts.py: stardist_images``) tiled into 64 x 64 tiles laid out as MoNuSeg is
(PNG training tiles, TIFF test tiles, 0/255 ``labelcol`` masks). The other layouts are SMALL SYNTHETIC folders
(``tests/data/paper_layouts.py``), 64 x 64, so each run takes seconds: the tests check the plumbing, not accuracy.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from svseg.cli import main
from tests.data.own_layouts import stardist_images
from tests.data.paper_layouts import write_afma, write_awesome_isic, write_msga, write_svanet

pytestmark = pytest.mark.slow

TILE = 64


def svseg(capsys, *args) -> str:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert rc == 0, f"svseg {args[0]} failed: {captured.err}"
    return captured.out


def write_real_monuseg(root: Path, tile: int = TILE) -> Path:
    """REAL nuclei tiles in the UCTransNet layout: 40 Train_Folder, 8 Val_Folder and the rest Test_Folder tiles."""
    src = stardist_images()
    image = tifffile.imread(src / "img2d.tif").astype(np.uint8)
    mask = tifffile.imread(src / "mask2d.tif")
    ds = root / "MoNuSeg"
    k = 0
    for y in range(0, image.shape[0] - tile + 1, tile):
        for x in range(0, image.shape[1] - tile + 1, tile):
            folder = "Train_Folder" if k < 40 else "Val_Folder" if k < 48 else "Test_Folder"
            (ds / folder / "img").mkdir(parents=True, exist_ok=True)
            (ds / folder / "labelcol").mkdir(parents=True, exist_ok=True)
            stem = f"DSB2018-tile-{k:02d}"
            crop = image[y:y + tile, x:x + tile]
            if folder == "Test_Folder":
                tifffile.imwrite(ds / folder / "img" / f"{stem}.tif", crop)
            else:
                Image.fromarray(crop).save(ds / folder / "img" / f"{stem}.png")
            Image.fromarray(((mask[y:y + tile, x:x + tile] > 0) * 255).astype(np.uint8)).save(
                ds / folder / "labelcol" / f"{stem}.png")
            k += 1
    return ds


LAYOUTS = {
    # layout: (the paper's bundle, writer of the source folder)
    "svanet": ("svanet", lambda root: write_svanet(root, "ISIC2018", n_train=8, n_val=3, size=TILE)),
    "uctransnet": ("sa2net", write_real_monuseg),
    "awesome_unet": ("sa2net", lambda root: write_awesome_isic(root, n=12, size=TILE)),
    "msga": ("msga", lambda root: write_msga(root, n_slices=4, size=TILE)),
    "afma": ("afma", lambda root: write_afma(root, n_train=8, n_val=2, n_test=2, size=TILE)),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_paper_layout_prepare_train_predict_evaluate(layout, tmp_path, capsys):
    bundle, write = LAYOUTS[layout]
    source = write(tmp_path / "source")
    ds = tmp_path / "prepared"
    out = svseg(capsys, "prepare", layout, "--source", source, "--output", ds, "--option", "progress=false")
    assert f"prepared {layout} in {ds}" in out
    doc = json.loads((ds / "dataset.json").read_text())
    assert doc["svseg"]["protocol"] == layout

    run = tmp_path / "run"
    svseg(capsys, "train", "--bundle", bundle, "--dataset", ds, "--max-epochs", "1", "--output", run,
          "--device", "cpu", "--override", "num_workers=0", "--override", "batch_size=4")
    assert (run / "models" / "model.pt").is_file()

    pred = tmp_path / "pred"
    svseg(capsys, "predict", "--bundle", bundle, "--input", ds / "imagesTs", "--output", pred,
          "--checkpoint", run / "models" / "model.pt", "--device", "cpu")
    ev = tmp_path / "eval"
    svseg(capsys, "evaluate", "--pred", pred, "--ref", ds / "labelsTs", "--output", ev, "--dataset", ds,
          "--protocol", layout)
    rows = list(csv.DictReader((ev / "metrics.csv").open()))
    test_cases = {p.name.split(".")[0] for p in (ds / "labelsTs").iterdir()}
    assert {r["case"] for r in rows} == test_cases
    assert all(r["dice"] in ("", "nan") or 0.0 <= float(r["dice"]) <= 1.0 for r in rows)
    assert (ev / "summary.json").is_file()
