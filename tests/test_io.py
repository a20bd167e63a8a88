"""Tests for :mod:`svseg.io` (atomic writes), including a SIGKILL-during-save test."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from svseg.io import (
    atomic_path,
    atomic_save_csv,
    atomic_save_figure,
    atomic_save_json,
    atomic_save_nifti,
    atomic_save_png,
    atomic_torch_save,
    atomic_write,
)

_WRITER = r"""
import sys, torch
sys.path.insert(0, sys.argv[2])
from svseg.io import atomic_torch_save
torch.set_num_threads(1)
path = sys.argv[1]
start = int(sys.argv[3])
i = start
while True:  # rewrite a ~16 MB checkpoint forever; the test kills us with SIGKILL
    atomic_torch_save({"counter": i, "weights": torch.full((4_000_000,), float(i))}, path)
    print(i, flush=True)
    i += 1
"""


def _temps(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f".{name}.*.tmp*"))


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    with atomic_write(target) as f:
        f.write("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write("two, half written")
            raise RuntimeError("writer failed")
    assert target.read_text() == "one"  # untouched
    assert _temps(target.parent, "a.txt") == []  # temp removed
    with atomic_write(target, "wb") as f:
        f.write(b"three")
    assert target.read_bytes() == b"three"


def test_atomic_write_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass
    with pytest.raises(ValueError, match="directory"):
        with atomic_write(tmp_path, "w"):
            pass


def test_json_csv_png_figure_nifti_helpers(tmp_path):
    import nibabel as nib
    from matplotlib.figure import Figure
    from PIL import Image

    atomic_save_json({"dice": np.float32(0.5), "hd95": float("nan"), "arr": np.arange(3)}, tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())  # strict JSON: NaN written as null
    assert data == {"dice": 0.5, "hd95": None, "arr": [0, 1, 2]}

    atomic_save_csv([{"case": "a", "dice": 0.5}, {"case": "b", "dice": 0.25, "hd95": 3.0}], tmp_path / "m.csv")
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines == ["case,dice,hd95", "a,0.5,", "b,0.25,3.0"]

    atomic_save_png(np.linspace(0, 1, 20 * 30).reshape(20, 30), tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as im:
        assert im.size == (30, 20)

    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    atomic_save_figure(fig, tmp_path / "f.png", dpi=50)
    with Image.open(tmp_path / "f.png") as im:
        assert im.format == "PNG" and im.size == (100, 50)

    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = [10, -5, 3]
    atomic_save_nifti(np.ones((4, 5, 6), np.uint8), affine, tmp_path / "p.nii.gz", dtype=np.uint8)
    img = nib.load(tmp_path / "p.nii.gz")
    np.testing.assert_allclose(img.affine, affine)
    assert img.shape == (4, 5, 6) and img.get_data_dtype() == np.uint8
    with pytest.raises(ValueError, match=".nii"):
        atomic_save_nifti(np.ones((2, 2, 2)), affine, tmp_path / "p.png")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_atomic_path_keeps_suffix_and_requires_file(tmp_path):
    with atomic_path(tmp_path / "x.nii.gz") as tmp:
        assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
        tmp.write_bytes(b"abc")
    assert (tmp_path / "x.nii.gz").read_bytes() == b"abc"


def test_sigkill_during_checkpoint_save_never_corrupts_latest(tmp_path):
    """Kill a process that rewrites a 16 MB checkpoint in a loop, at random moments; the file
    must always load and be internally consistent. At least one kill must land mid-write
    (a leftover temporary file proves it) so the test really exercises the interrupted case."""
    import torch

    path = tmp_path / "checkpoint_latest.pt"
    repo = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    rnd = random.Random(0)
    killed_mid_write = 0
    counter = 0
    rounds = 0
    while rounds < 3 or (killed_mid_write == 0 and rounds < 8):
        rounds += 1
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), repo, str(counter)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()  # one complete save exists
            assert first.strip(), proc.stderr.read()[-2000:]
            time.sleep(rnd.uniform(0.05, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if _temps(tmp_path, path.name):
            killed_mid_write += 1
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # never corrupt
        assert ckpt["weights"].shape == (4_000_000,)
        assert bool((ckpt["weights"] == float(ckpt["counter"])).all()), "checkpoint content is mixed"
        assert ckpt["counter"] >= counter
        counter = ckpt["counter"] + 1
        for t in _temps(tmp_path, path.name):  # what AtomicCheckpointSaver does at start
            t.unlink()
    assert killed_mid_write >= 1, "no kill landed during a write"


def test_atomic_torch_save_roundtrip(tmp_path):
    import torch

    obj = {"a": torch.arange(5), "b": [1, 2]}
    atomic_torch_save(obj, tmp_path / "c.pt")
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert torch.equal(back["a"], obj["a"]) and back["b"] == [1, 2]
