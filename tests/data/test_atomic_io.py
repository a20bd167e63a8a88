"""Tests of the atomic writers used by every svseg data writer (synthetic arrays)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from svseg.data._io import AtomicDirectory, atomic_write_json, save_h5, save_npz


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or old folders left


def test_atomic_files(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
    save_npz(tmp_path / "s.npz", image=np.ones((2, 3), np.float32), label=np.zeros((2, 3), np.float32))
    with np.load(tmp_path / "s.npz") as z:
        assert sorted(z.files) == ["image", "label"]
    save_h5(tmp_path / "v.npy.h5", {"image": np.ones((2, 3, 4), np.float32)}, attrs={"spacing": [1.0, 2.0, 3.0]})
    import h5py

    with h5py.File(tmp_path / "v.npy.h5") as f:
        assert f["image"].shape == (2, 3, 4) and list(f.attrs["spacing"]) == [1.0, 2.0, 3.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz", "v.npy.h5", "x.json"]
