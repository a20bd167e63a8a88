"""Intensity transforms of svseg's data sets, as MONAI dictionary transforms and numpy functions.

The rule of each data set lives in :attr:`svseg.data.specs.DatasetSpec.intensity`:

* ``ct_window``: clip CT Hounsfield units to ``[a_min, a_max]`` and scale linearly to
  ``[b_min, b_max]`` (Synapse: [-125, 275] as TransUNet; LiTS: [-250, 250] as AFMA).
* ``minmax``: per volume, clip to the ``[lower_percentile, upper_percentile]`` percentiles and
  scale to ``[b_min, b_max]`` (ACDC, demo). With ``nonzero`` the percentiles are taken over the
  non-zero voxels only.
* ``zscore``: per volume, subtract the mean and divide by the standard deviation (over non-zero
  voxels with ``nonzero``).

svseg's converters apply the rule once when they write the prepared data, so
``intensity_transform(spec)`` (``prepared=True``) only makes the type float32; use
``prepared=False`` for raw scans, e.g. a new CT to segment.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, EnsureTyped, MapTransform, NormalizeIntensityd, ScaleIntensityRanged
from monai.utils import convert_to_dst_type

from svseg.data.specs import DatasetSpec, get_dataset

__all__ = [
    "ct_window",
    "percentile_minmax",
    "zscore",
    "apply_intensity",
    "PercentileMinMaxd",
    "ct_window_transform",
    "intensity_transform",
    "IntensityRuled",
]


def ct_window(x: np.ndarray, a_min: float, a_max: float, b_min: float = 0.0, b_max: float = 1.0) -> np.ndarray:
    """Clip ``x`` to ``[a_min, a_max]`` and scale linearly to ``[b_min, b_max]`` (float32)."""
    if not a_max > a_min:
        raise ValueError(f"a_max must be greater than a_min, got a_min={a_min}, a_max={a_max}.")
    x = np.clip(np.asarray(x, dtype=np.float32), a_min, a_max)
    return ((x - a_min) / (a_max - a_min) * (b_max - b_min) + b_min).astype(np.float32)


def percentile_minmax(
    x: np.ndarray,
    lower_percentile: float = 0.0,
    upper_percentile: float = 100.0,
    b_min: float = 0.0,
    b_max: float = 1.0,
    nonzero: bool = False,
) -> np.ndarray:
    """Clip ``x`` to its percentile range and scale to ``[b_min, b_max]`` (float32).

    A constant volume maps to ``b_min`` everywhere.
    """
    if not 0.0 <= lower_percentile < upper_percentile <= 100.0:
        raise ValueError(
            f"need 0 <= lower_percentile < upper_percentile <= 100, got {lower_percentile}, {upper_percentile}."
        )
    x = np.asarray(x, dtype=np.float32)
    sample = x[x != 0] if nonzero else x
    if sample.size == 0:
        return np.full_like(x, b_min, dtype=np.float32)
    lo, hi = np.percentile(sample, [lower_percentile, upper_percentile])
    if hi <= lo:
        return np.full_like(x, b_min, dtype=np.float32)
    out = (np.clip(x, lo, hi) - lo) / (hi - lo)
    return (out * (b_max - b_min) + b_min).astype(np.float32)


def zscore(x: np.ndarray, nonzero: bool = False, eps: float = 1e-8) -> np.ndarray:
    """Subtract the mean and divide by the standard deviation (float32)."""
    x = np.asarray(x, dtype=np.float32)
    sample = x[x != 0] if nonzero else x
    if sample.size == 0:
        return x.copy()
    out = (x - sample.mean()) / max(float(sample.std()), eps)
    if nonzero:
        out = np.where(x != 0, out, 0.0)
    return out.astype(np.float32)


def _rule_arguments(rule: Mapping[str, Any]) -> tuple[str, tuple]:
    """The kind of an intensity rule (``ct_window``, ``minmax``, ``zscore`` or ``none``) and the
    positional arguments, after the array, of its function (:func:`ct_window`, :func:`percentile_minmax`,
    :func:`zscore`)."""
    kind = rule.get("rule")
    if kind == "ct_window":
        return kind, (rule["a_min"], rule["a_max"], rule.get("b_min", 0.0), rule.get("b_max", 1.0))
    if kind == "minmax":
        return kind, (
            rule.get("lower_percentile", 0.0),
            rule.get("upper_percentile", 100.0),
            rule.get("b_min", 0.0),
            rule.get("b_max", 1.0),
            rule.get("nonzero", False),
        )
    if kind == "zscore":
        return kind, (rule.get("nonzero", False),)
    if kind in ("none", None):
        return "none", ()
    raise ValueError(f"unknown intensity rule {kind!r}; expected 'ct_window', 'minmax', 'zscore' or 'none'.")


def apply_intensity(x: np.ndarray, rule: Mapping[str, Any]) -> np.ndarray:
    """Apply a data set's intensity rule (a :attr:`DatasetSpec.intensity` mapping) to an array."""
    kind, args = _rule_arguments(rule)
    if kind == "none":
        return np.asarray(x, dtype=np.float32)
    return {"ct_window": ct_window, "minmax": percentile_minmax, "zscore": zscore}[kind](x, *args)


class PercentileMinMaxd(MapTransform):
    """Per-image percentile clip and min-max scaling (see :func:`percentile_minmax`).

    Unlike MONAI's ``ScaleIntensityRangePercentilesd`` it can take the percentiles over non-zero
    voxels only. Each channel of a channel-first image is scaled on its own.
    """

    def __init__(
        self,
        keys: KeysCollection,
        lower_percentile: float = 0.0,
        upper_percentile: float = 100.0,
        b_min: float = 0.0,
        b_max: float = 1.0,
        nonzero: bool = False,
        channel_wise: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= lower_percentile < upper_percentile <= 100.0:
            raise ValueError(
                f"need 0 <= lower_percentile < upper_percentile <= 100, got {lower_percentile}, {upper_percentile}."
            )
        self.kw = dict(
            lower_percentile=lower_percentile, upper_percentile=upper_percentile, b_min=b_min, b_max=b_max, nonzero=nonzero
        )
        self.channel_wise = channel_wise

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            if self.channel_wise and arr.ndim >= 3:
                out = np.stack([percentile_minmax(c, **self.kw) for c in arr])
            else:
                out = percentile_minmax(arr, **self.kw)
            d[key] = convert_to_dst_type(out, dst=img, dtype=torch.float32 if isinstance(img, torch.Tensor) else np.float32)[0]
        return d


class IntensityRuled(MapTransform):
    """Apply a data set's intensity rule to raw images, and nothing to prepared ones.

    svseg's converters apply the rule once when they write a prepared data set and record that in
    its ``dataset.json`` (:func:`svseg.data.prepared_marker`); a bundle reads that marker
    (``prepared``) and this transform then only casts to float32, so prepared data are never
    normalised twice. Any other input (a raw scan given to ``svseg predict``, a data set in its
    published layout) gets the rule here, with the same functions the converters use
    (:func:`apply_intensity`, per channel), so a raw scan and its prepared copy reach the network
    with the same values.

    Config snippet::

        {"_target_": "svseg.data.IntensityRuled", "keys": "image", "rule": "@intensity_rule",
         "prepared": "@inputs_prepared"}

    Args:
        keys: image keys.
        rule: the intensity rule (:attr:`svseg.data.DatasetSpec.intensity`).
        prepared: the inputs already have the rule applied.
    """

    def __init__(self, keys: KeysCollection, rule: Mapping[str, Any], prepared: bool,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        _rule_arguments(rule)  # an unknown rule fails here, at config time
        self.rule = dict(rule)
        self.prepared = bool(prepared)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if self.prepared:
                d[key] = convert_to_dst_type(img, dst=img, dtype=torch.float32)[0]
                continue
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            out = np.stack([apply_intensity(c, self.rule) for c in arr]) if arr.ndim >= 3 else apply_intensity(arr, self.rule)
            d[key] = convert_to_dst_type(out, dst=img, dtype=torch.float32)[0]
        return d


def ct_window_transform(
    keys: KeysCollection, a_min: float, a_max: float, b_min: float = 0.0, b_max: float = 1.0
) -> ScaleIntensityRanged:
    """A MONAI CT window: clip to ``[a_min, a_max]``, scale to ``[b_min, b_max]``."""
    if not a_max > a_min:
        raise ValueError(f"a_max must be greater than a_min, got a_min={a_min}, a_max={a_max}.")
    return ScaleIntensityRanged(keys, a_min=a_min, a_max=a_max, b_min=b_min, b_max=b_max, clip=True)


def intensity_transform(spec: Any, keys: KeysCollection = "image", prepared: bool = True) -> MapTransform | Compose:
    """The MONAI dictionary transform for a data set's intensity rule.

    Args:
        spec: a :class:`~svseg.data.specs.DatasetSpec`, a data set name, or an intensity rule mapping.
        keys: image keys.
        prepared: the data were written by an svseg converter (the rule is already applied):
            only cast to float32. ``False`` applies the rule (raw scans).
    """
    if isinstance(spec, str):
        spec = get_dataset(spec)
    rule = spec.intensity if isinstance(spec, DatasetSpec) else spec
    cast = EnsureTyped(keys, dtype=torch.float32, track_meta=True)
    if prepared:
        return cast
    kind, args = _rule_arguments(rule)
    if kind == "none":
        return cast
    if kind == "zscore":
        tr: MapTransform = NormalizeIntensityd(keys, nonzero=args[0], channel_wise=True)
    else:
        tr = {"ct_window": ct_window_transform, "minmax": PercentileMinMaxd}[kind](keys, *args)
    return Compose([cast, tr])
