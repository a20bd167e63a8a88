"""Pieces shared by the svseg networks.

2D/3D resizing, non-overlapping patch extraction (AFMA, SvANet's AssembleFormer), the
torchvision-layout ResNet/ResNeXt bottleneck and encoder (SvANet, MSGA), stem adaptation of
pretrained weights, state-dict checks and argument/input validation.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

__all__ = [
    "check_pretrained",
    "flatten_outputs",
    "interp_mode",
    "resize_to",
    "extract_patches",
    "fold_patches",
    "ResNetBottleneck",
    "ResNetEncoder",
    "adapt_stem_channels",
    "state_dict_mismatch",
    "state_dict_mismatch_summary",
    "check_positive_int",
    "check_network_input",
]


def interp_mode(spatial_dims: int) -> str:
    """``"bilinear"`` in 2D, ``"trilinear"`` in 3D."""
    return "bilinear" if spatial_dims == 2 else "trilinear"


def resize_to(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    """Interpolate ``x`` (B, C, *spatial) to ``size`` (``align_corners=False``); a no-op at that size already."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


# ------------------------------------------------------------------------------------- patches
def extract_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut ``(B, C, *S)`` into non-overlapping patches ``(B, C, N, p**s)``.

    Patches are ordered row-major over the patch grid and row-major inside a patch, as
    ``nn.Unfold(kernel_size=p, stride=p)`` orders them for one channel; a remainder that does
    not fill a patch is dropped (as ``nn.Unfold``).
    """
    b, c = x.shape[0], x.shape[1]
    spatial = x.shape[2:]
    s = len(spatial)
    p = patch_size
    grid = [int(n) // p for n in spatial]
    x = x[(slice(None), slice(None)) + tuple(slice(0, g * p) for g in grid)]
    shape = [b, c]
    for g in grid:
        shape += [g, p]
    x = x.reshape(shape)
    perm = [0, 1] + [2 + 2 * i for i in range(s)] + [3 + 2 * i for i in range(s)]
    return x.permute(perm).reshape(b, c, math.prod(grid), p**s)


def fold_patches(patches: torch.Tensor, patch_size: int, spatial: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`extract_patches`: ``(B, C, N, p**s)`` -> ``(B, C, *spatial)``.

    The remainder that :func:`extract_patches` drops is filled with zeros (as ``nn.Fold`` with
    ``output_size=spatial``).
    """
    b, c = patches.shape[0], patches.shape[1]
    s = len(spatial)
    p = patch_size
    grid = [int(n) // p for n in spatial]
    x = patches.reshape([b, c] + grid + [p] * s)
    perm = [0, 1]
    for i in range(s):
        perm += [2 + i, 2 + s + i]
    x = x.permute(perm).reshape([b, c] + [g * p for g in grid])
    pad: list[int] = []
    for n, g in zip(reversed(list(spatial)), reversed(grid)):
        pad += [0, int(n) - g * p]
    if any(pad):
        x = F.pad(x, pad)
    return x


# -------------------------------------------------------------------------------------- ResNet
class ResNetBottleneck(nn.Module):
    """ResNet v1.5 / ResNeXt bottleneck (torchvision layout and attribute names; stride on the 3x3).

    ``conv1`` 1x1 to ``width = int(planes * width_per_group / 64) * groups``, ``conv2`` 3x3 grouped
    (stride ``stride``), ``conv3`` 1x1 to ``planes * 4``, each followed by batch norm (``bn1..3``);
    ``downsample`` (1x1 strided conv + batch norm) is built when the stride or the width changes.

    Args:
        spatial_dims: 2 or 3.
        in_planes: input channels.
        planes: bottleneck channels (the output has ``planes * expansion``).
        stride: stride of the 3x3 convolution and of the downsample path.
        groups: groups of the 3x3 convolution (ResNeXt cardinality; 1 for ResNet).
        width_per_group: width per group (64 for ResNet, e.g. 4 or 8 for ResNeXt).
        norm_eps: batch-norm epsilon (1e-5 torchvision; SvANet's authors use 1e-3).
    """

    expansion = 4

    def __init__(
        self,
        spatial_dims: int,
        in_planes: int,
        planes: int,
        stride: int = 1,
        groups: int = 1,
        width_per_group: int = 64,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        conv, norm = Conv[Conv.CONV, spatial_dims], Norm[Norm.BATCH, spatial_dims]
        width = int(planes * (width_per_group / 64.0)) * groups
        out_planes = planes * self.expansion
        self.conv1 = conv(in_planes, width, 1, bias=False)
        self.bn1 = norm(width, eps=norm_eps)
        self.conv2 = conv(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = norm(width, eps=norm_eps)
        self.conv3 = conv(width, out_planes, 1, bias=False)
        self.bn3 = norm(out_planes, eps=norm_eps)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(conv(in_planes, out_planes, 1, stride, bias=False), norm(out_planes, eps=norm_eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet/ResNeXt (bottleneck) feature extractor without ``fc``, 2D or 3D.

    Parameter names equal torchvision's (``conv1``, ``bn1``, ``layer1..4``), so a torchvision
    state dict (minus ``fc.*``) loads into the 2D build. Stage ``i`` (0..3) has
    ``stem_width * 2**i`` bottleneck planes; the first block of stages 2..4 has stride 2.

    ``forward`` returns the five stage outputs: stem (stride 2, before the max pool), layer1
    (stride 4), layer2 (8), layer3 (16), layer4 (32); their widths are ``out_channels``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels of the 7x7 stride-2 stem convolution.
        layers: bottleneck blocks per stage ((3, 4, 6, 3) for ResNet-50).
        stem_width: stem output channels (64 in torchvision; every stage scales with it).
        groups: ResNeXt cardinality (1 for ResNet).
        width_per_group: ResNeXt width per group (64 for ResNet).
        norm_eps: batch-norm epsilon of every layer.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        layers: Sequence[int] = (3, 4, 6, 3),
        stem_width: int = 64,
        groups: int = 1,
        width_per_group: int = 64,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.conv1 = Conv[Conv.CONV, spatial_dims](in_channels, stem_width, 7, 2, 3, bias=False)
        self.bn1 = Norm[Norm.BATCH, spatial_dims](stem_width, eps=norm_eps)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1)
        in_planes = stem_width
        self.out_channels = [stem_width]
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            planes = stem_width * 2**i
            mods = []
            for j in range(blocks):
                first_stride = stride if j == 0 else 1
                mods.append(ResNetBottleneck(spatial_dims, in_planes, planes, first_stride, groups, width_per_group, norm_eps))
                in_planes = planes * ResNetBottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*mods))
            self.out_channels.append(in_planes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x0 = self.relu(self.bn1(self.conv1(x)))
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]


def adapt_stem_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Fit a pretrained stem kernel ``(out, c, *k)`` to ``in_channels`` input channels.

    Unchanged when ``c == in_channels``; summed over the ``c`` channels for one input channel;
    otherwise tiled along the channel axis, cut to ``in_channels`` and scaled by
    ``c / in_channels`` (a constant image then gives the same response).
    """
    c = weight.shape[1]
    if c == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = math.ceil(in_channels / c)
    return weight.repeat(1, reps, *([1] * (weight.ndim - 2)))[:, :in_channels] * (c / in_channels)


# -------------------------------------------------------------------------------- state dicts
def state_dict_mismatch(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Sorted keys ``own`` lacks in ``state`` (missing), ``state`` has beyond ``own`` (unexpected), and
    keys present in both with different shapes."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    return missing, unexpected, bad_shape


def state_dict_mismatch_summary(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]) -> str | None:
    """``None`` when ``state`` has exactly the keys and shapes of ``own``; otherwise the counts and
    first five of each kind: ``"<n> missing keys [...], <n> unexpected keys [...], <n> shape mismatches [...]"``."""
    missing, unexpected, bad_shape = state_dict_mismatch(own, state)
    if not (missing or unexpected or bad_shape):
        return None
    return (
        f"{len(missing)} missing keys {missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, "
        f"{len(bad_shape)} shape mismatches {bad_shape[:5]}"
    )


# --------------------------------------------------------------------------------- validation
def check_positive_int(name: str, value) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an ``int`` (not a ``bool``) >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")


def check_pretrained(pretrained: Any) -> None:
    """``pretrained`` must be ``False``, ``True`` (the library's weights, needs internet) or a local weight file path."""
    if not (pretrained is False or pretrained is True or isinstance(pretrained, (str, os.PathLike))):
        raise ValueError(f"pretrained must be False, True or a local weight file path, got {pretrained!r}.")


def flatten_outputs(out: Any) -> list[torch.Tensor]:
    """Every tensor of a network output (a tensor, or nested tuples/lists/dicts of them), in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    values = out.values() if isinstance(out, Mapping) else out
    return [t for item in values for t in flatten_outputs(item)]


def check_network_input(x: torch.Tensor, network: str, spatial_dims: int, in_channels: int, size_divisor: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, *spatial)`` with ``spatial_dims`` spatial
    axes, each divisible by ``size_divisor``; ``network`` names the network in the message."""
    if x.ndim != spatial_dims + 2:
        raise ValueError(
            f"{network}(spatial_dims={spatial_dims}) expects a {spatial_dims + 2}D input "
            f"(B, C, *spatial), got shape {tuple(x.shape)}."
        )
    if x.shape[1] != in_channels:
        raise ValueError(f"{network} expects {in_channels} input channels, got {x.shape[1]}.")
    if any(int(s) % size_divisor != 0 for s in x.shape[2:]):
        raise ValueError(f"{network} needs every spatial size divisible by {size_divisor}; got {tuple(x.shape[2:])}.")
