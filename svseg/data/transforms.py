"""Intensity transforms of svseg's data sets, as MONAI dictionary transforms and numpy functions.

The rule of each data set lives in :attr:`svseg.data.specs.DatasetSpec.intensity`:

* ``ct_window``: clip CT Hounsfield units to ``[a_min, a_max]`` and scale linearly to
  ``[b_min, b_max]`` (Synapse: [-125, 275] as TransUNet; LiTS: [-250, 250] as AFMA).
* ``minmax``: per volume, clip to the ``[lower_percentile, upper_percentile]`` percentiles and
  scale to ``[b_min, b_max]`` (ACDC, demo). With ``nonzero`` the percentiles are taken over the
  non-zero voxels only.
* ``zscore``: per volume, subtract the mean and divide by the standard deviation (over non-zero
  voxels with ``nonzero``).
* ``ct_zscore`` (a planned CT data set, nnU-Net's CT scheme): clip to ``[lower, upper]`` (the 0.5 and
  99.5 percentiles of the foreground of the whole training set) and subtract the foreground ``mean``,
  divide by its ``std``.
* ``rgb_imagenet``: divide by ``max_value`` (255 for 8-bit images), then subtract the ImageNet mean
  and divide by its standard deviation, channel by channel (R, G, B).
* ``per_channel``: ``{"rule": "per_channel", "channels": [rule_0, rule_1, ...]}``, one rule per channel
  (a planned data set whose channels have different modalities).

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
    "apply_intensity_channels",
    "check_rule",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
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


#: ImageNet channel statistics (R, G, B) that torchvision's and timm's pretrained encoders expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def ct_zscore(x: np.ndarray, lower: float, upper: float, mean: float, std: float) -> np.ndarray:
    """Clip to ``[lower, upper]``, subtract ``mean``, divide by ``std`` (nnU-Net's CT normalisation; float32)."""
    x = np.clip(np.asarray(x, dtype=np.float32), lower, upper)
    return ((x - mean) / max(float(std), 1e-8)).astype(np.float32)


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
    if kind == "ct_zscore":
        return kind, (rule["lower"], rule["upper"], rule["mean"], rule["std"])
    if kind == "rgb_imagenet":
        return kind, (float(rule.get("max_value", 255.0)),)
    if kind == "per_channel":
        channels = rule.get("channels")
        if not isinstance(channels, (list, tuple)) or not channels:
            raise ValueError("a 'per_channel' intensity rule needs a non-empty 'channels' list of rules.")
        for c in channels:
            _rule_arguments(c)
        return kind, (list(channels),)
    if kind in ("none", None):
        return "none", ()
    raise ValueError(f"unknown intensity rule {kind!r}; expected 'ct_window', 'minmax', 'zscore', 'ct_zscore', "
                     "'rgb_imagenet', 'per_channel' or 'none'.")


def check_rule(rule: Mapping[str, Any]) -> str:
    """The kind of an intensity rule; raises ``ValueError``/``KeyError`` for an unknown rule or a missing field."""
    return _rule_arguments(rule)[0]


def apply_intensity(x: np.ndarray, rule: Mapping[str, Any]) -> np.ndarray:
    """Apply a data set's intensity rule (a :attr:`DatasetSpec.intensity` mapping) to an array."""
    kind, args = _rule_arguments(rule)
    if kind == "none":
        return np.asarray(x, dtype=np.float32)
    if kind in ("rgb_imagenet", "per_channel"):
        raise ValueError(f"the {kind!r} rule applies to a channel-first image: use apply_intensity_channels.")
    return {"ct_window": ct_window, "minmax": percentile_minmax, "zscore": zscore, "ct_zscore": ct_zscore}[kind](x, *args)


def apply_intensity_channels(x: np.ndarray, rule: Mapping[str, Any]) -> np.ndarray:
    """Apply an intensity rule to a channel-first image ``(C, *spatial)``, channel by channel.

    ``rgb_imagenet`` and ``per_channel`` give each channel its own statistics; the other rules apply
    the same function to every channel (per-channel percentiles and moments).
    """
    x = np.asarray(x, dtype=np.float32)
    kind, args = _rule_arguments(rule)
    if kind == "rgb_imagenet":
        if x.shape[0] != 3:
            raise ValueError(f"the 'rgb_imagenet' rule needs 3 channels (R, G, B), got {x.shape[0]}.")
        return np.stack([(x[c] / args[0] - IMAGENET_MEAN[c]) / IMAGENET_STD[c] for c in range(3)]).astype(np.float32)
    if kind == "per_channel":
        if len(args[0]) != x.shape[0]:
            raise ValueError(f"the 'per_channel' rule lists {len(args[0])} channels, the image has {x.shape[0]}.")
        return np.stack([apply_intensity(c, r) for c, r in zip(x, args[0])]).astype(np.float32)
    return np.stack([apply_intensity(c, rule) for c in x]).astype(np.float32)


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
            out = apply_intensity_channels(arr, self.rule) if arr.ndim >= 3 else apply_intensity(arr, self.rule)
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
    if kind in ("ct_zscore", "rgb_imagenet", "per_channel"):
        return Compose([cast, IntensityRuled(keys, rule, prepared=False)])
    if kind == "zscore":
        tr: MapTransform = NormalizeIntensityd(keys, nonzero=args[0], channel_wise=True)
    else:
        tr = {"ct_window": ct_window_transform, "minmax": PercentileMinMaxd}[kind](keys, *args)
    return Compose([cast, tr])
