"""Multi-scale self-guided attention network (MSGA) for medical image segmentation.

Sinha and Dolz, "Multi-scale self-guided attention for medical image segmentation", IEEE JBHI
25(1), 2021 (arXiv:1906.02849). Authors' code: https://github.com/sinAshish/Multi-Scale-Attention
(``src/models/my_stacked_danet.py`` class ``DAF_stack``, ``attention.py``,
``resnext101_regular.py``; the initialisation ``weights_init`` and the loss live in ``main.py``).

Independent MONAI-style re-implementation written from the paper and from reading the authors'
code. The default build holds exactly the parameters the authors' model uses in its forward pass
(103,556,063 for 1 input channel and 5 classes); the modules the authors define but never call
(``conv6_*``, ``conv7_*``, ``attention1-4``, ``refine1-4``) are not built.
"""
from __future__ import annotations

import os

import torch
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

from svseg.networks.blocks import (
    ResNetEncoder,
    adapt_stem_channels,
    check_network_input,
    check_positive_int,
    interp_mode,
    resize_to,
)

__all__ = ["MSGA", "ResNeXtEncoder", "msga_weights_init"]

# name -> (blocks per stage, groups, width per group); all use the torchvision bottleneck (x4)
_BACKBONES = {
    "resnext101_32x8d": ((3, 4, 23, 3), 32, 8),
    "resnext50_32x4d": ((3, 4, 6, 3), 32, 4),
    "resnet101": ((3, 4, 23, 3), 1, 64),
    "resnet50": ((3, 4, 6, 3), 1, 64),
}


# ------------------------------------------------------------------------------------ backbone
class ResNeXtEncoder(ResNetEncoder):
    """ResNet/ResNeXt feature extractor for 2D or 3D, without the classifier.

    :class:`svseg.networks.blocks.ResNetEncoder` configured by backbone name (torchvision batch
    norm). Parameter names follow torchvision (``conv1``, ``bn1``, ``layer1..4``), so a torchvision
    ``resnext101_32x8d`` / ``resnet101`` state dict (minus ``fc.*``) loads into the 2D build.
    ``forward`` returns the outputs of ``layer1..layer4`` (strides 4, 8, 16, 32; widths 256, 512,
    1024, 2048).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels of the 7x7 stride-2 stem convolution.
        backbone: one of ``resnext101_32x8d`` (MSGA authors), ``resnext50_32x4d``, ``resnet101``,
            ``resnet50``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, backbone: str = "resnext101_32x8d") -> None:
        if backbone not in _BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(_BACKBONES)}, got {backbone!r}.")
        layers, groups, width = _BACKBONES[backbone]
        super().__init__(spatial_dims, in_channels, layers, groups=groups, width_per_group=width)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return super().forward(x)[1:]


# ---------------------------------------------------------------------------- attention blocks
class PositionAttention(nn.Module):
    """DANet position attention (PAM) over all ``N = prod(spatial)`` positions.

    ``out = gamma * (V softmax(Q^T K)^T) + x`` with 1x1 projections Q, K to ``channels // 8`` and
    V to ``channels``; ``gamma`` starts at 0. Memory is O(B N^2).
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.query_conv = conv(channels, channels // 8, kernel_size=1)
        self.key_conv = conv(channels, channels // 8, kernel_size=1)
        self.value_conv = conv(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        q = self.query_conv(x).flatten(2).transpose(1, 2)  # (B, N, C')
        k = self.key_conv(x).flatten(2)  # (B, C', N)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, N, N)
        v = self.value_conv(x).flatten(2)  # (B, C, N)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(x.shape)
        return self.gamma * out + x


class ChannelAttention(nn.Module):
    """DANet channel attention (CAM): ``out = gamma * softmax(max(E) - E) X + x``, ``E = X X^T``."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        feat = x.flatten(2)  # (B, C, N)
        energy = torch.bmm(feat, feat.transpose(1, 2))  # (B, C, C)
        energy = energy.max(dim=-1, keepdim=True)[0].expand_as(energy) - energy
        attn = torch.softmax(energy, dim=-1)
        out = torch.bmm(attn, feat).reshape(x.shape)
        return self.gamma * out + x


class AttentionLayer(nn.Sequential):
    """The authors' ``PAM_CAM_Layer``: 3x3 conv ``2C -> C`` + BN + PReLU, PAM or CAM, 3x3 conv
    ``C -> C`` + BN + PReLU."""

    def __init__(self, spatial_dims: int, channels: int, position: bool = True) -> None:
        conv = Conv[Conv.CONV, spatial_dims]
        norm = Norm[Norm.BATCH, spatial_dims]
        super().__init__(
            conv(2 * channels, channels, kernel_size=3, padding=1),
            norm(channels),
            nn.PReLU(),
            PositionAttention(spatial_dims, channels) if position else ChannelAttention(),
            conv(channels, channels, kernel_size=3, padding=1),
            norm(channels),
            nn.PReLU(),
        )


class MultiConv(nn.Sequential):
    """The authors' ``MultiConv(attn=False)``: (3x3 conv + BN + PReLU) x 2, 1x1 conv + BN + PReLU."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        conv = Conv[Conv.CONV, spatial_dims]
        norm = Norm[Norm.BATCH, spatial_dims]
        super().__init__(
            conv(in_channels, out_channels, kernel_size=3, padding=1),
            norm(out_channels),
            nn.PReLU(),
            conv(out_channels, out_channels, kernel_size=3, padding=1),
            norm(out_channels),
            nn.PReLU(),
            conv(out_channels, out_channels, kernel_size=1),
            norm(out_channels),
            nn.PReLU(),
        )


def _conv_bn_relu_x2(spatial_dims: int, in_channels: int, out_channels: int) -> list[nn.Module]:
    conv = Conv[Conv.CONV, spatial_dims]
    norm = Norm[Norm.BATCH, spatial_dims]
    return [
        conv(in_channels, out_channels, kernel_size=3, padding=1),
        norm(out_channels),
        nn.ReLU(inplace=True),
        conv(out_channels, out_channels, kernel_size=3, padding=1),
        norm(out_channels),
        nn.ReLU(inplace=True),
    ]


class SemanticModule(nn.Module):
    """The guiding encoder-decoder (the authors' ``semanticModule``).

    Encoder: two blocks of (3x3 conv + BN + ReLU) x 2 + 2x max-pool (``C -> 2C -> 4C``).
    Decoder: two blocks of (3x3 conv + BN + ReLU) x 2 + 2x transposed conv (``4C -> 2C -> 2C``,
    resized to the first encoder output, then ``2C -> C -> C``). Returns the per-sample
    flattened bottleneck ``(B, 4C * N / 4**spatial_dims)`` (the "semantic vector") and the
    reconstruction ``(B, C, *spatial)``; the input's spatial sizes must be even.
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        pool = Pool[Pool.MAX, spatial_dims]
        convt = Conv[Conv.CONVTRANS, spatial_dims]
        c = channels
        self.mode = interp_mode(spatial_dims)
        self.enc1 = nn.Sequential(*_conv_bn_relu_x2(spatial_dims, c, 2 * c), pool(kernel_size=2, stride=2))
        self.enc2 = nn.Sequential(*_conv_bn_relu_x2(spatial_dims, 2 * c, 4 * c), pool(kernel_size=2, stride=2))
        self.dec2 = nn.Sequential(*_conv_bn_relu_x2(spatial_dims, 4 * c, 2 * c), convt(2 * c, 2 * c, kernel_size=2, stride=2))
        self.dec1 = nn.Sequential(*_conv_bn_relu_x2(spatial_dims, 2 * c, c), convt(c, c, kernel_size=2, stride=2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        d2 = self.dec2(e2)
        d1 = self.dec1(resize_to(d2, e1.shape[2:], self.mode))
        return e2.flatten(1), d1


class GuidedAttentionStep(nn.Module):
    """One guided-attention step over the four scales.

    For scale ``s`` with input ``z_s`` (``2C`` channels): ``(vec_s, rec_s) = semantic(z_s)`` (one
    semantic module shared by the four scales of the step), and
    ``A_s = conv_out_s((PAM_s(z_s) + CAM_s(z_s)) * conv_sem_s(rec_s))`` (``C`` channels).
    """

    def __init__(self, spatial_dims: int, channels: int, num_scales: int = 4) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        c = channels
        self.pam = nn.ModuleList([AttentionLayer(spatial_dims, c, True) for _ in range(num_scales)])
        self.cam = nn.ModuleList([AttentionLayer(spatial_dims, c, False) for _ in range(num_scales)])
        self.semantic = SemanticModule(spatial_dims, 2 * c)
        self.conv_sem = nn.ModuleList([conv(2 * c, c, kernel_size=3, padding=1) for _ in range(num_scales)])
        self.conv_out = nn.ModuleList([conv(c, c, kernel_size=1) for _ in range(num_scales)])

    def forward(self, z: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        vec, rec = self.semantic(z)
        att = (self.pam[scale](z) + self.cam[scale](z)) * self.conv_sem[scale](rec)
        return vec, rec, self.conv_out[scale](att)


def msga_weights_init(module: nn.Module) -> None:
    """The authors' ``weights_init`` (``src/main.py``), applied with ``net.apply``.

    Convolutions and transposed convolutions (2D and 3D): Xavier-normal weights (biases keep
    PyTorch's default). BatchNorm: weight ~ N(1, 0.02), bias 0. Other layers are untouched.
    """
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.xavier_normal_(module.weight)
    elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm3d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# -------------------------------------------------------------------------------------- network
class MSGA(nn.Module):
    """Multi-scale self-guided attention network (Sinha & Dolz, IEEE JBHI 2020).

    Architecture (the authors' ``DAF_stack``):

    1. Backbone (:class:`ResNeXtEncoder`): ResNeXt-101 32x8d with an ``in_channels`` stem, as in
       the authors' code (the paper text says ResNet-101: ``backbone="resnet101"``).
    2. Multi-scale features: each of ``layer1..4`` -> 1x1 conv to ``features`` + BN + PReLU,
       bilinearly resized to the 1/4 resolution (``F_1..F_4``); a 1x1 head per scale gives the
       four coarse predictions; ``F_MS = MultiConv(cat(F_4, F_3, F_2, F_1))``.
    3. Two stacked guided-attention steps (:class:`GuidedAttentionStep`, separate weights per
       step and per scale except the semantic module, shared by the 4 scales of a step):
       step 1 on ``cat(F_s, F_MS)`` gives ``A_s``; step 2 on ``cat(F_s, A_s * F_MS)`` gives
       ``R_s``; a 1x1 head per scale on ``R_s`` gives the four refined predictions.
    4. All predictions are bilinearly resized to the input size.

    Outputs (logits; no activation inside the model, as in the authors' code):

    - eval mode: the mean of the four refined predictions, ``(B, out_channels, *spatial)``.
    - train mode: a 32-tuple in the authors' order (see the index constants):

      - ``[0:8]`` semantic vectors, ordered (scale 4 step 1, scale 4 step 2, scale 3 step 1,
        scale 3 step 2, ..., scale 1 step 2). **Difference:** the authors flatten them over the
        whole batch (``view(-1)``); here they are per sample, ``(B, N)``. The MSE between two
        of them is the same either way.
      - ``[8:16]`` semantic-module inputs: step 1 scales 1..4, then step 2 scales 1..4.
      - ``[16:24]`` their reconstructions, in the same order (element ``16 + i`` pairs with
        ``8 + i``).
      - ``[24:32]`` predictions at the input size: coarse scales 1..4, then refined scales 1..4.
        Use :class:`svseg.losses.MSGALoss` on the whole tuple; ``out[MSGA.PREDICTIONS]`` gives the
        eight logits maps.

    Verified against the authors' ``DAF_stack`` with copied weights: identical eval output,
    identical 32 train-mode outputs and identical BatchNorm running statistics after a train
    forward (the scales are processed in the authors' order, 4 to 1). In eval mode the four
    coarse heads are not evaluated (the authors compute and discard them).

    Initialisation: by default the authors' ``weights_init`` (:func:`msga_weights_init`:
    Xavier-normal convolutions, BN weight ~ N(1, 0.02)) is applied to the whole network, as
    their ``main.py`` does; the authors train from scratch.

    3D: ``spatial_dims=3`` builds the whole network with 3D layers (3D ResNeXt built with MONAI
    factories, trilinear resizing, 3D PAM/CAM and semantic module). This is an svseg capability
    with no published result and no pretrained weights; note that the position attention stores a
    ``(N x N)`` matrix with ``N`` the number of voxels at 1/4 resolution, so keep 3D patches small.

    Input size: every spatial size must be divisible by 8 (the semantic module halves the 1/4
    resolution features twice and upsamples back, so the 1/4 size must be even).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels (authors: 1, MRI).
        out_channels: classes incl. background (authors: 5 for CHAOS MRI).
        backbone: ``resnext101_32x8d`` (authors' code, default), ``resnet101`` (paper text),
            ``resnext50_32x4d`` or ``resnet50``.
        features: width of the multi-scale features and attention blocks (authors: 64;
            must be divisible by 8 for the PAM projections).
        pretrained: ``False`` (authors: from scratch) or a local path to a torchvision-layout
            state dict of the chosen backbone (2D only; ``fc.*`` keys are ignored and a stem with
            a different number of input channels is adapted: summed over RGB for 1 channel,
            otherwise repeated and rescaled). ``True`` is rejected: nothing is downloaded.
        init_weights: apply :func:`msga_weights_init` (default ``True``, as the authors do).

    Raises:
        ValueError: for invalid arguments or inputs; FileNotFoundError for a missing checkpoint.
    """

    SEMANTIC_VECTORS = slice(0, 8)
    SEMANTIC_INPUTS = slice(8, 16)
    RECONSTRUCTIONS = slice(16, 24)
    PREDICTIONS = slice(24, 32)
    size_divisor = 8
    num_scales = 4

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 5,
        backbone: str = "resnext101_32x8d",
        features: int = 64,
        pretrained: bool | str | os.PathLike = False,
        init_weights: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("features", features)):
            check_positive_int(name, value)
        if features % 8 != 0:
            raise ValueError(f"features must be divisible by 8 (PAM query/key width features // 8), got {features}.")
        if backbone not in _BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(_BACKBONES)}, got {backbone!r}.")
        if pretrained is True:
            raise ValueError(
                "pretrained=True is not supported: svseg downloads nothing at run time and the MSGA authors "
                "train from scratch; pass pretrained=False or a local torchvision-layout checkpoint path."
            )
        if pretrained not in (False, None) and not isinstance(pretrained, (str, os.PathLike)):
            raise ValueError(f"pretrained must be False or a checkpoint path, got {pretrained!r}.")
        if pretrained not in (False, None) and spatial_dims != 2:
            raise ValueError("pretrained checkpoints are 2D torchvision weights; use spatial_dims=2 or pretrained=False.")

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self._mode = interp_mode(spatial_dims)
        conv = Conv[Conv.CONV, spatial_dims]
        norm = Norm[Norm.BATCH, spatial_dims]
        c = features
        n = self.num_scales

        self.backbone = ResNeXtEncoder(spatial_dims, in_channels, backbone)
        widths = (256, 512, 1024, 2048)
        self.down = nn.ModuleList([nn.Sequential(conv(w, c, kernel_size=1), norm(c), nn.PReLU()) for w in widths])
        self.predict = nn.ModuleList([conv(c, out_channels, kernel_size=1) for _ in range(n)])
        self.fuse = MultiConv(spatial_dims, n * c, c)
        self.steps = nn.ModuleList([GuidedAttentionStep(spatial_dims, c, n) for _ in range(2)])
        self.predict_refined = nn.ModuleList([conv(c, out_channels, kernel_size=1) for _ in range(n)])

        if init_weights:
            self.apply(msga_weights_init)
        if pretrained not in (False, None):
            self.load_backbone(pretrained)

    # ------------------------------------------------------------------------------- weights
    def load_backbone(self, path: str | os.PathLike) -> None:
        """Load a torchvision-layout backbone state dict from a local file.

        ``fc.*`` keys are dropped; a stem (``conv1.weight``) with another number of input
        channels is adapted (summed for 1 channel, else tiled and rescaled by ``C_ckpt / C``).

        Raises:
            FileNotFoundError: if ``path`` does not exist.
            ValueError: if the file does not match the backbone.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pretrained checkpoint not found: {path}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"pretrained checkpoint {path} does not hold a state dict.")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        stem = state.get("conv1.weight")
        if stem is not None and stem.ndim == 4:
            state["conv1.weight"] = adapt_stem_channels(stem, self.in_channels)
        try:
            self.backbone.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"pretrained checkpoint {path} does not match the backbone: {err}") from err

    # ------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        check_network_input(x, "MSGA", self.spatial_dims, self.in_channels, self.size_divisor)
        feats = self.backbone(x)
        size = feats[0].shape[2:]
        down = [resize_to(blk(f), size, self._mode) for blk, f in zip(self.down, feats)]
        fused = self.fuse(torch.cat(down[::-1], dim=1))  # the authors' order: scale 4, 3, 2, 1

        n = self.num_scales
        order = range(n - 1, -1, -1)  # the authors run scale 4 first (matters for BN running stats)
        vecs: list[list[torch.Tensor]] = [[None] * n, [None] * n]  # type: ignore[list-item]
        inputs: list[list[torch.Tensor]] = [[None] * n, [None] * n]  # type: ignore[list-item]
        recs: list[list[torch.Tensor]] = [[None] * n, [None] * n]  # type: ignore[list-item]
        att: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        refined: list[torch.Tensor] = [None] * n  # type: ignore[list-item]
        for step, block in enumerate(self.steps):
            for s in order:
                guide = fused if step == 0 else att[s] * fused
                z = torch.cat((down[s], guide), dim=1)
                vec, rec, out = block(z, s)
                vecs[step][s], inputs[step][s], recs[step][s] = vec, z, rec
                if step == 0:
                    att[s] = out
                else:
                    refined[s] = out

        out_size = x.shape[2:]
        preds_refined = [resize_to(head(r), out_size, self._mode) for head, r in zip(self.predict_refined, refined)]
        if not self.training:
            return (preds_refined[0] + preds_refined[1] + preds_refined[2] + preds_refined[3]) / 4
        preds = [resize_to(head(d), out_size, self._mode) for head, d in zip(self.predict, down)]
        sem = []
        for s in order:
            sem += [vecs[0][s], vecs[1][s]]
        return tuple(sem + inputs[0] + inputs[1] + recs[0] + recs[1] + preds + preds_refined)
