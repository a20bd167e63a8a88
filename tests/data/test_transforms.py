"""Tests of the intensity rules (:mod:`svseg.data.transforms`), as numpy functions and MONAI transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from svseg.data import specs
from svseg.data import transforms as tr


def test_numpy_intensity_rules():
    hu = np.array([-1000.0, -125.0, 75.0, 275.0, 3000.0])
    np.testing.assert_allclose(tr.ct_window(hu, -125, 275), [0.0, 0.0, 0.5, 1.0, 1.0])
    x = np.arange(101, dtype=np.float32)
    out = tr.percentile_minmax(x, 10, 90)
    assert out[0] == 0 and out[-1] == 1 and out[50] == pytest.approx(0.5)
    z = tr.zscore(np.array([1.0, 2.0, 3.0, 0.0]), nonzero=True)
    assert z[3] == 0 and z[:3].mean() == pytest.approx(0.0, abs=1e-6)
    assert np.all(tr.percentile_minmax(np.full((3, 3), 7.0)) == 0)
    with pytest.raises(ValueError, match="a_max"):
        tr.ct_window(hu, 10, 10)
    with pytest.raises(ValueError, match="unknown intensity rule"):
        tr.apply_intensity(hu, {"rule": "gamma"})


@pytest.mark.parametrize("name", ["synapse", "lits", "acdc", "demo"])
def test_intensity_transform_per_dataset(name):
    spec = specs.get_dataset(name)
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 300, size=(1, 8, 8, 4)).astype(np.float32) if spec.modality == "CT" else rng.gamma(2, 50, (1, 8, 8, 4)).astype(np.float32)
    img = MetaTensor(torch.as_tensor(raw), affine=torch.diag(torch.tensor([0.8, 0.8, 3.0, 1.0], dtype=torch.float64)))
    out = tr.intensity_transform(spec, prepared=False)({"image": img})["image"]
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    torch.testing.assert_close(out.affine, img.affine)
    np.testing.assert_allclose(out.numpy(), tr.apply_intensity(raw[0], spec.intensity)[None], atol=1e-5)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    same = tr.intensity_transform(name)({"image": img})["image"]  # prepared data: cast only
    torch.testing.assert_close(same.as_tensor(), img.as_tensor())
