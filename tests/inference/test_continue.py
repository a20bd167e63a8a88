"""``svseg predict --continue``: cases with all their outputs are skipped, the others are predicted, and a
failure keeps an existing output folder as it was.

Synthetic data: three small smooth random volumes (seeded), predicted by a seeded, untrained small UNet
swapped into the msa2net bundle (its label maps are not trivial, so a recomputed case is recognisable).
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from svseg.cli import main
from tests.inference.small_model import SMALL_NET, save_small_weights

AFFINE = np.diag([0.9, 1.2, 2.5, 1.0])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("continue")
    inputs = root / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for case in ("a", "b", "c"):
        volume = ndimage.gaussian_filter(rng.random((40, 36, 4)), sigma=(4, 4, 0)) * 1000
        nib.save(nib.Nifti1Image(volume.astype(np.float32), AFFINE), str(inputs / f"{case}.nii.gz"))
    return inputs, save_small_weights(root)


def _predict(inputs, out, weights, *extra):
    return main(["predict", "--bundle", "msa2net", "--input", str(inputs), "--output", str(out), "--checkpoint",
                 str(weights), "--device", "cpu", "--override", "network_def=" + json.dumps(SMALL_NET), *extra])


def _labels(path):
    return np.asarray(nib.load(str(path)).dataobj)


@contextmanager
def _svseg_log():
    """The messages svseg logs in the block (a handler on the ``svseg`` logger itself: a bundle run
    reconfigures the root logger's handlers from its logging.conf, pytest's caplog handler included)."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger("svseg")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_continue_skips_finished_cases_and_predicts_the_rest(setup, tmp_path, capsys):
    inputs, weights = setup
    out = tmp_path / "out"
    assert _predict(inputs, out, weights) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == [f"{c}_{kind}" for c in "abc" for kind in ("seg.nii.gz", "statistics.json")]
    first = {c: _labels(out / f"{c}_seg.nii.gz") for c in "abc"}
    assert all(len(np.unique(v)) > 1 for v in first.values())
    # a: complete, marked (an all-zero map, as no prediction gives) to show it is not recomputed;
    # b: label map missing; c: statistics missing (a run killed between the two files)
    nib.save(nib.Nifti1Image(np.zeros_like(first["a"]), AFFINE), str(out / "a_seg.nii.gz"))
    (out / "b_seg.nii.gz").unlink()
    (out / "c_statistics.json").unlink()
    capsys.readouterr()
    with _svseg_log() as log:
        assert _predict(inputs, out, weights, "--continue") == 0
    assert any("--continue: skipped 1 case(s)" in m and "; 2 to predict" in m for m in log), log
    assert sorted(p.name for p in out.iterdir()) == files
    assert not _labels(out / "a_seg.nii.gz").any()  # skipped
    np.testing.assert_array_equal(_labels(out / "b_seg.nii.gz"), first["b"])  # recomputed
    np.testing.assert_array_equal(_labels(out / "c_seg.nii.gz"), first["c"])
    printed = capsys.readouterr().out
    assert "b_seg.nii.gz" in printed and "a_seg.nii.gz" not in printed
    # everything done: nothing runs
    with _svseg_log() as log:
        assert _predict(inputs, out, weights, "--continue") == 0
    assert any("--continue: skipped 3 case(s)" in m and "; 0 to predict" in m for m in log), log
    # a failure keeps the existing output folder and its files as they were
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (inputs / "d.nii.gz").write_bytes(b"not a NIfTI file")
    try:
        assert _predict(inputs, out, weights, "--continue") == 2
    finally:
        (inputs / "d.nii.gz").unlink()
    assert "d.nii.gz" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # without --continue every case is predicted again
    assert _predict(inputs, out, weights) == 0
    np.testing.assert_array_equal(_labels(out / "a_seg.nii.gz"), first["a"])


def test_a_failure_removes_an_output_folder_it_created(setup, tmp_path):
    inputs, weights = setup
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.nii.gz").write_bytes(b"not a NIfTI file")
    assert _predict(bad, tmp_path / "new", weights, "--continue") == 2
    assert not (tmp_path / "new").exists()
