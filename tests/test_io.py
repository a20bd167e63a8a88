"""Tests of :mod:`svseg.io`, the one I/O layer: atomic files and folders, permissions, the JSON
policy, every format writer, NIfTI round trips, case ids and file matching (synthetic data only),
plus a SIGKILL-during-save test."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from svseg.io import (
    AtomicDirectory,
    atomic_path,
    atomic_save_csv,
    atomic_save_figure,
    atomic_save_h5,
    atomic_save_json,
    atomic_save_nifti,
    atomic_save_npz,
    atomic_save_png,
    atomic_save_text,
    atomic_torch_save,
    atomic_write,
    case_name,
    load_nifti,
    match_files,
    to_json_safe,
)
from tests.helpers import reaped, sigkill

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
    atomic_save_json({"dice": np.float32(0.5), "hd95": float("nan"), "arr": np.arange(3)}, tmp_path / "s.json")
    data = json.loads((tmp_path / "s.json").read_text())  # strict JSON: NaN written as null
    assert data == {"dice": 0.5, "hd95": None, "arr": [0, 1, 2]}
    atomic_save_text("a\nb", tmp_path / "t.txt")
    assert (tmp_path / "t.txt").read_text() == "a\nb"

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
        with reaped(proc):
            first = proc.stdout.readline()  # one complete save exists
            assert first.strip(), proc.stderr.read()[-2000:]
            time.sleep(rnd.uniform(0.05, 0.6))
            assert sigkill(proc, timeout=30) == -signal.SIGKILL
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
    obj = {"a": torch.arange(5), "b": [1, 2]}
    atomic_torch_save(obj, tmp_path / "c.pt")
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert torch.equal(back["a"], obj["a"]) and back["b"] == [1, 2]


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_and_folders_honour_the_umask(tmp_path, umask_027):
    """Not the 0600 / 0700 of tempfile.mkstemp / mkdtemp: what open() / mkdir() would give."""
    with atomic_write(tmp_path / "w.txt") as f:
        f.write("x")
    with atomic_path(tmp_path / "p.bin") as tmp:
        tmp.write_bytes(b"x")
    atomic_save_json({"a": 1}, tmp_path / "j.json")
    atomic_save_nifti(np.zeros((2, 2, 2), np.uint8), np.eye(4), tmp_path / "n.nii.gz")
    atomic_save_h5({"image": np.zeros((2, 2))}, tmp_path / "v.h5")
    for name in ("w.txt", "p.bin", "j.json", "n.nii.gz", "v.h5"):
        assert _mode(tmp_path / name) == 0o640, name
    with AtomicDirectory(tmp_path / "tree") as tmp:
        (tmp / "f").write_text("1")
    assert _mode(tmp_path / "tree") == 0o750
    os.umask(0o022)
    atomic_save_csv([{"a": 1}], tmp_path / "c.csv")
    assert _mode(tmp_path / "c.csv") == 0o644


def test_failed_writers_keep_the_old_file_and_leave_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    atomic_save_json({"v": 1}, target)
    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic_save_json({"v": object()}, target)
    with pytest.raises(ZeroDivisionError):
        with atomic_path(tmp_path / "summary.json") as tmp:
            tmp.write_text("half")
            1 / 0
    nii = tmp_path / "x.nii.gz"
    atomic_save_nifti(np.ones((2, 2, 2), np.uint8), np.eye(4), nii)
    with pytest.raises(ValueError, match="affine must be 4x4"):
        atomic_save_nifti(np.zeros((2, 2, 2), np.uint8), np.eye(3), nii)
    with pytest.raises(FileNotFoundError, match="did not create"):
        with atomic_path(tmp_path / "gone.bin") as tmp:
            tmp.unlink()
    assert json.loads(target.read_text()) == {"v": 1}
    assert load_nifti(nii)[0].sum() == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json", "x.nii.gz"]


def test_json_policy_for_nan_inf_numpy_tensors_and_paths(tmp_path):
    obj = {
        "nan": float("nan"), "inf": float("inf"), "minus_inf": -np.inf, "f32": np.float32(0.25),
        "nan32": np.float32("nan"), "i64": np.int64(3), "flag": np.bool_(True), "plain": True,
        "array": np.array([[1.5, np.inf], [np.nan, -np.inf]]), "tensor": torch.tensor([1, 2]),
        "path": Path("/a/b"), "tuple": (1, 2.0), "set": {7}, np.int64(5): "numpy key", "nested": [{"x": np.nan}],
    }
    expected = {
        "nan": None, "inf": "inf", "minus_inf": "-inf", "f32": 0.25, "nan32": None, "i64": 3, "flag": True,
        "plain": True, "array": [[1.5, "inf"], [None, "-inf"]], "tensor": [1, 2], "path": "/a/b",
        "tuple": [1, 2.0], "set": [7], "5": "numpy key", "nested": [{"x": None}],
    }
    safe = to_json_safe(obj)
    assert type(safe["i64"]) is int and type(safe["flag"]) is bool and type(safe["f32"]) is float
    atomic_save_json(obj, tmp_path / "p.json")
    text = (tmp_path / "p.json").read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("}\n")
    assert json.loads(text) == expected == json.loads(json.dumps(safe))


def test_csv_from_rows_and_dataframe(tmp_path):
    atomic_save_csv([{"b": 1, "a": 2}], tmp_path / "order.csv", fieldnames=["a", "b"])
    assert (tmp_path / "order.csv").read_text().splitlines() == ["a,b", "2,1"]
    with pytest.raises(ValueError):
        atomic_save_csv([{"a": 1, "zzz": 2}], tmp_path / "bad.csv", fieldnames=["a"])
    assert not (tmp_path / "bad.csv").exists()
    df = pd.DataFrame({"case": ["a", "b"], "hd95": [np.inf, np.nan]})
    atomic_save_csv(df, tmp_path / "df.csv")
    assert (tmp_path / "df.csv").read_text().splitlines() == ["case,hd95", "a,inf", "b,"]


def test_nifti_round_trip_keeps_affine_spacing_dtype_and_header_codes(tmp_path):
    affine = np.array([[0, -0.8, 0, 12.0], [0.9, 0, 0, -4.0], [0, 0, 2.5, 7.0], [0, 0, 0, 1.0]])
    labels = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    atomic_save_nifti(torch.as_tensor(labels), affine, tmp_path / "l.nii")
    arr, aff, spacing = load_nifti(tmp_path / "l.nii")
    np.testing.assert_array_equal(arr, labels)
    np.testing.assert_allclose(aff, affine)
    assert arr.dtype == np.int16 and spacing == pytest.approx((0.9, 0.8, 2.5))
    img = nib.load(tmp_path / "l.nii")
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert img.header.get_xyzt_units()[0] == "mm"
    # a source header's codes are kept; an explicit dtype wins over the array's
    src = nib.Nifti1Image(np.zeros((2, 3, 4), np.float32), affine)
    src.set_qform(affine, code=2)
    src.set_sform(affine, code=4)
    atomic_save_nifti(labels[..., None], affine, tmp_path / "h.nii.gz", header=src.header, dtype=np.uint8)
    out = nib.load(tmp_path / "h.nii.gz")
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (2, 4)
    assert out.get_data_dtype() == np.uint8
    arr4, _, spacing4 = load_nifti(tmp_path / "h.nii.gz", dtype=np.float32)  # (2, 3, 4, 1): trailing axis dropped
    assert arr4.shape == (2, 3, 4) and arr4.dtype == np.float32 and len(spacing4) == 3
    with pytest.raises(FileNotFoundError, match="not found"):
        load_nifti(tmp_path / "missing.nii.gz")


def test_npz_and_h5(tmp_path):
    atomic_save_npz({"image": np.ones((2, 3), np.float32), "label": np.zeros((2, 3), np.float32)}, tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as z:
        assert sorted(z.files) == ["image", "label"] and z["image"].dtype == np.float32
    atomic_save_npz({"a": [1, 2]}, tmp_path / "u.npz", compress=False)
    with np.load(tmp_path / "u.npz") as z:
        assert z["a"].tolist() == [1, 2]
    atomic_save_h5({"image": np.ones((2, 3, 4), np.float32)}, tmp_path / "v.npy.h5", attrs={"spacing": [1.0, 2.0, 3.0], "axes": "zyx"})
    with h5py.File(tmp_path / "v.npy.h5") as f:
        assert f["image"].shape == (2, 3, 4) and list(f.attrs["spacing"]) == [1.0, 2.0, 3.0] and f.attrs["axes"] == "zyx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz", "u.npz", "v.npy.h5"]


def test_atomic_directory_success_failure_and_keep_existing(tmp_path):
    final = tmp_path / "out"
    with AtomicDirectory(final) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (final / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError, match="boom"):
        with AtomicDirectory(final, overwrite=True) as tmp:
            (tmp / "b.txt").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]  # untouched
    with pytest.raises(FileExistsError, match="already exists"):
        with AtomicDirectory(final) as tmp:
            (tmp / "c.txt").write_text("3")
    # another process finished the same output meanwhile: keep it, drop ours
    with AtomicDirectory(final, overwrite=True, keep_existing=lambda: True) as tmp:
        (tmp / "d.txt").write_text("4")
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]
    with AtomicDirectory(final, overwrite=True) as tmp:
        (tmp / "e.txt").write_text("5")
    assert sorted(p.name for p in final.iterdir()) == ["e.txt"]
    empty = tmp_path / "placeholder"
    empty.mkdir()
    with AtomicDirectory(empty) as tmp:  # an empty folder is simply replaced
        (tmp / "f.txt").write_text("6")
    assert (empty / "f.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "placeholder"]  # no temporary or old folders left


def test_case_name():
    assert case_name("/d/case01.nii.gz") == "case01"
    assert case_name(Path("img0001.nii")) == "img0001"
    assert case_name("case0001.npy.h5") == "case0001" and case_name("v.h5") == "v"
    assert case_name("s.npz") == "s" and case_name("x.NRRD") == "x" and case_name("y.mha") == "y"
    assert case_name("shot.png") == "shot" and case_name("CASE.NII.GZ") == "CASE"
    assert case_name("odd.name.dcm") == "odd.name" and case_name("plain") == "plain"
    assert case_name("a_0000.nii.gz") == "a_0000"  # only the file ending goes


def _label_file(path: Path) -> None:
    atomic_save_nifti(np.zeros((4, 4, 4), np.uint8), np.eye(4), path)


def test_match_files_pairs_by_case_id_and_reports_problems(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "r").mkdir()
    with pytest.raises(FileNotFoundError, match="ref_dir"):
        match_files(tmp_path / "p", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no .nii"):
        match_files(tmp_path / "p", tmp_path / "r")
    for name in ("r/x1.nii.gz", "r/x2.nii.gz", "r/case3_gt.nii.gz", "p/x1.nii.gz", "p/case3_pred.nii", "p/stray.nii.gz"):
        _label_file(tmp_path / name)
    (tmp_path / "p" / "notes.txt").write_text("not an image")
    with pytest.raises(FileNotFoundError, match="x2"):
        match_files(tmp_path / "p", tmp_path / "r")
    with pytest.warns(UserWarning) as caught:
        pairs = match_files(tmp_path / "p", tmp_path / "r", allow_missing=True)
    messages = " ".join(str(w.message) for w in caught)
    assert "x2" in messages and "stray.nii.gz" in messages
    assert [(c, p.name, r.name) for c, p, r in pairs] == [
        ("case3", "case3_pred.nii", "case3_gt.nii.gz"),
        ("x1", "x1.nii.gz", "x1.nii.gz"),
    ]
