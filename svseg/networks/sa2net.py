"""SA2-Net: Scale-aware Attention Network for Microscopic Image Segmentation.

Fiaz, Noman, Cholakkal, Anwer, Hanna, Khan, "SA2-Net: Scale-aware Attention Network for
Microscopic Image Segmentation", BMVC 2023 (oral), arXiv:2309.16661. Authors' code:
https://github.com/mustansarfiaz/SA2-Net (``MoNuSeg_GLaS/nets/sasanet.py``, class ``MyNet``).

This is an independent re-implementation in MONAI style (``spatial_dims`` and MONAI layer
factories), written from the paper and from reading the authors' code. It reproduces the
authors' *used* parameters exactly (19,296,596 for ``out_channels=1``); the modules the
authors define but never call (``Multi_scale_Fuse1-3``, ``AG_new.weight`` in every up-block,
``dwconv3x3_1``/``dwconv5x5_1`` in every mixed-scale feed-forward) are not built.
"""
from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.layers.factories import Act, Conv, Norm, Pool
from torch import nn

from svseg.networks.blocks import check_network_input, check_positive_int, interp_mode, resize_to

__all__ = ["SA2Net"]


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, *spatial)`` tensor (ConvNeXt style).

    Args:
        channels: number of channels ``C``.
        eps: variance epsilon (the authors use 1e-6).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return self.weight.view(shape) * x + self.bias.view(shape)


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (padding 1) -> BatchNorm -> ReLU (the authors' ``ConvBatchNorm``)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = Norm[Norm.BATCH, spatial_dims](out_channels)
        self.act = Act[Act.RELU]()


def _double_conv(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        ConvBNReLU(spatial_dims, in_channels, out_channels), ConvBNReLU(spatial_dims, out_channels, out_channels)
    )


class DownBlock(nn.Module):
    """Max-pool by 2, then two :class:`ConvBNReLU`."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2)
        self.convs = _double_conv(spatial_dims, in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(self.pool(x))


class MixedScaleFeedForward(nn.Module):
    """Local scale attention of the SA2 block (the authors' ``Mixed_Scal_FeedForward``).

    1x1 projection to ``2 * hidden`` channels, parallel 3x3 and 5x5 depthwise convolutions each
    followed by ReLU; each branch is split in two halves and the 3x3 half is gated by the
    sigmoid of the matching 5x5 half; the gated halves are concatenated and projected back.

    Args:
        spatial_dims: 2 or 3.
        channels: input/output channels.
        expansion: ``hidden = int(channels * expansion)`` (authors: 2).
    """

    def __init__(self, spatial_dims: int, channels: int, expansion: float = 2.0) -> None:
        super().__init__()
        hidden = int(channels * expansion)
        conv = Conv[Conv.CONV, spatial_dims]
        self.project_in = conv(channels, 2 * hidden, kernel_size=1)
        self.dwconv3 = conv(2 * hidden, 2 * hidden, kernel_size=3, padding=1, groups=2 * hidden)
        self.dwconv5 = conv(2 * hidden, 2 * hidden, kernel_size=5, padding=2, groups=2 * hidden)
        self.project_out = conv(2 * hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project_in(x)
        a3, b3 = torch.relu(self.dwconv3(x)).chunk(2, dim=1)
        a5, b5 = torch.relu(self.dwconv5(x)).chunk(2, dim=1)
        x = torch.cat((a3 * torch.sigmoid(a5), b3 * torch.sigmoid(b5)), dim=1)
        return self.project_out(x)


class ConvMLP(nn.Module):
    """Per-scale refinement after the scale attention (the authors' ``MLP``).

    ``y = fc2(GELU(fc1(n + GELU(pos(n))))) + x`` with ``n = LayerNorm(x)`` over channels and
    ``pos`` a 3x3 depthwise convolution.
    """

    def __init__(self, spatial_dims: int, channels: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.norm = ChannelsFirstLayerNorm(channels)
        self.pos = conv(channels, channels, kernel_size=3, padding=1, groups=channels)
        self.fc1 = conv(channels, channels * mlp_ratio, kernel_size=1)
        self.fc2 = conv(channels * mlp_ratio, channels, kernel_size=1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        y = y + self.act(self.pos(y))
        y = self.fc2(self.act(self.fc1(y)))
        return y + x


class SA2Block(nn.Module):
    """Scale-aware attention (SA2) block (the authors' ``BottleNeck_Block``).

    Takes four ``channels``-wide features at four scales, resizes them to the third one's size,
    applies a :class:`MixedScaleFeedForward` per scale (local scale attention), then global
    scale attention: BN over the concatenation, a 3x3 convolution to ``channels + 4`` and GELU,
    split into a shared query ``q`` (refined by a 5x5 depthwise convolution and GELU) and four
    one-channel scale gates; scale ``i`` becomes ``local_i * gate_i * q``, is resized back,
    added to its input, refined by a :class:`ConvMLP` and projected by a 3x3 convolution to
    ``out_channels[i]``.

    Args:
        spatial_dims: 2 or 3.
        channels: width of every input scale (the authors' base width, 64).
        out_channels: the four output widths (authors: 64, 128, 256, 512).
        expansion: hidden expansion of the mixed-scale feed-forward.
        mlp_ratio: expansion of the per-scale MLP.
    """

    num_scales = 4

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        out_channels: Sequence[int],
        expansion: float = 2.0,
        mlp_ratio: int = 4,
    ) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        n = self.num_scales
        self.channels = channels
        self.mode = interp_mode(spatial_dims)
        self.local_attn = nn.ModuleList([MixedScaleFeedForward(spatial_dims, channels, expansion) for _ in range(n)])
        self.norm = Norm[Norm.BATCH, spatial_dims](channels * n)
        self.fuse = conv(channels * n, channels + n, kernel_size=3, padding=1)
        self.qconv = conv(channels, channels, kernel_size=5, padding=2, groups=channels)
        self.act = nn.GELU()
        self.mlp = nn.ModuleList([ConvMLP(spatial_dims, channels, mlp_ratio) for _ in range(n)])
        self.proj = nn.ModuleList([conv(channels, c, kernel_size=3, padding=1) for c in out_channels])

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        ref_size = feats[2].shape[2:]
        local = [attn(resize_to(f, ref_size, self.mode)) for attn, f in zip(self.local_attn, feats)]
        fused = self.act(self.fuse(self.norm(torch.cat(local, dim=1))))
        q, gates = torch.split(fused, [self.channels, self.num_scales], dim=1)
        q = self.act(self.qconv(q))
        outs = []
        for i, f in enumerate(feats):
            y = local[i] * gates[:, i : i + 1] * q
            y = resize_to(y, f.shape[2:], self.mode) + f
            outs.append(self.proj[i](self.mlp[i](y)))
        return outs


class AdaptiveUpAttentionGate(nn.Module):
    """Gate of the AuA up-block (the authors' ``AG_new``).

    ``g1 = dw_k(GELU(conv1x1(LN(g))))``, ``x1 = dw_5(x)``,
    ``psi = sigmoid(BN(conv1x1(GELU(cat(g1, x1)))))`` (one channel) and the output is
    ``conv3x3(psi * x1) + x``.

    Args:
        spatial_dims: 2 or 3.
        gate_channels: channels of the (upsampled) decoder feature ``g``.
        skip_channels: channels of the skip feature ``x``.
        kernel_size: size of the large depthwise kernel on the gate path (authors: 11).
    """

    def __init__(self, spatial_dims: int, gate_channels: int, skip_channels: int, kernel_size: int = 11) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.gate_path = nn.Sequential(
            ChannelsFirstLayerNorm(gate_channels),
            conv(gate_channels, gate_channels, kernel_size=1),
            nn.GELU(),
            conv(gate_channels, gate_channels, kernel_size=kernel_size, padding=kernel_size // 2, groups=gate_channels),
        )
        self.skip_path = conv(skip_channels, skip_channels, kernel_size=5, padding=2, groups=skip_channels)
        self.act = nn.GELU()
        self.psi = nn.Sequential(
            conv(gate_channels + skip_channels, 1, kernel_size=1), Norm[Norm.BATCH, spatial_dims](1), nn.Sigmoid()
        )
        self.proj = conv(skip_channels, skip_channels, kernel_size=3, padding=1)

    def forward(self, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g1 = self.gate_path(g)
        x1 = self.skip_path(x)
        psi = self.psi(self.act(torch.cat((g1, x1), dim=1)))
        return self.proj(psi * x1) + x


class AuAUpBlock(nn.Module):
    """AuA up-block (the authors' ``UpBlock_attention``): the upsampled decoder feature only
    drives the gate; it is **not** concatenated with the skip.

    Nearest upsampling by 2 of ``x``, :class:`AdaptiveUpAttentionGate` on the skip, then two
    :class:`ConvBNReLU` from ``skip_channels`` to ``out_channels``.
    """

    def __init__(
        self, spatial_dims: int, gate_channels: int, skip_channels: int, out_channels: int, kernel_size: int = 11
    ) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.gate = AdaptiveUpAttentionGate(spatial_dims, gate_channels, skip_channels, kernel_size)
        self.convs = _double_conv(spatial_dims, skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.convs(self.gate(self.up(x), skip))


class SA2Net(nn.Module):
    """SA2-Net (Fiaz et al., BMVC 2023) for 2D, and as an svseg extension 3D, segmentation.

    A U-Net encoder trained from scratch (base width ``features``; inc + 4 max-pool down-blocks:
    ``f, 2f, 4f, 8f, 8f``), side 3x3 convolutions that bring scales 2-4 to ``f`` channels (and
    the bottom feature ``8f -> 8f``), the SA2 block (:class:`SA2Block`, local mixed-scale
    feed-forward per scale plus global scale gating) that rewrites the four skips, and four AuA
    up-blocks (:class:`AuAUpBlock`, gate-only, no concatenation). Four 1x1 heads give deep
    supervision: ``outc4`` on the last decoder output, ``outc3``/``outc2``/``outc1`` on the
    outputs of up2/up3/up4, bilinearly resized to the input size.

    Outputs (svseg / MONAI convention: **logits**, no activation inside the model; the authors
    apply a sigmoid inside ``MyNet`` when ``n_classes == 1``; here the sigmoid lives in
    :class:`svseg.losses.DeepSupervisionDiceBCELoss` and in post-processing):

    - train mode with ``deep_supervision=True``: a tuple of 4 tensors in the authors' order
      ``(logits4, logits3, logits2, logits1)``, each ``(B, out_channels, *input_size)``; the
      first one is the main (finest) output;
    - eval mode (or ``deep_supervision=False``): the ``outc4`` logits only.

    Parameter count: the default build holds exactly the authors' *used* parameters,
    19,296,596 for ``out_channels=1`` (19,297,112 for 2): the authors' 32,484,308 minus the
    never-called ``Multi_scale_Fuse1-3``, ``AG_new.weight`` and ``dwconv3x3_1``/``dwconv5x5_1``.

    Verified against the authors' ``MyNet`` with copied weights: identical outputs (train and
    eval mode, 1 and 2 classes; max abs difference <= 1.2e-6 on the auxiliary heads, 0 on the
    main head). Other differences from the authors' code: the auxiliary heads are applied
    before the resize to the input size (a 1x1 conv commutes with bilinear resizing, so the
    result is the same at lower cost), and the input size is validated.

    3D: ``spatial_dims=3`` builds the same architecture with 3D layers (MONAI factories;
    trilinear resizing, 3D depthwise kernels incl. the 11^3 gate kernel). The paper and the
    authors' code are 2D only; the 3D variant is an svseg capability with no published result.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (authors: 3, RGB microscopy).
        out_channels: output channels (authors: 1 for MoNuSeg/GlaS, 2 for ISIC/SegPC).
        features: base width ``f`` of the encoder and of the SA2 block (authors: 64).
        gate_kernel_size: odd size of the large depthwise kernel in the AuA gate (authors: 11).
        ffn_expansion: hidden expansion of the mixed-scale feed-forward (authors: 2).
        mlp_ratio: expansion of the per-scale MLP in the SA2 block (authors: 4).
        deep_supervision: return the four heads in train mode (authors: yes). With ``False``
            the three auxiliary heads are not built and train mode returns one tensor.

    Raises:
        ValueError: for invalid arguments, or in ``forward`` when a spatial size is not
            divisible by 16 (four 2x poolings whose outputs are gated against 2x upsampling).

    Example:
        >>> net = SA2Net(spatial_dims=2, in_channels=3, out_channels=1)
        >>> net.eval()(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 1, 64, 64])
    """

    size_divisor = 16

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        features: int = 64,
        gate_kernel_size: int = 11,
        ffn_expansion: float = 2.0,
        mlp_ratio: int = 4,
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}.")
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        check_positive_int("features", features)
        check_positive_int("mlp_ratio", mlp_ratio)
        check_positive_int("gate_kernel_size", gate_kernel_size)
        if gate_kernel_size % 2 == 0:
            raise ValueError(f"gate_kernel_size must be odd (same-size padding), got {gate_kernel_size}.")
        valid_expansion = isinstance(ffn_expansion, (int, float)) and not isinstance(ffn_expansion, bool)
        if not valid_expansion or int(features * ffn_expansion) < 1:
            raise ValueError(
                f"ffn_expansion must be a positive number with int(features * ffn_expansion) >= 1, got {ffn_expansion!r}."
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.deep_supervision = bool(deep_supervision)
        self._mode = interp_mode(spatial_dims)

        f = features
        dims = [f, 2 * f, 4 * f, 8 * f]
        conv = Conv[Conv.CONV, spatial_dims]
        # encoder
        self.inc = ConvBNReLU(spatial_dims, in_channels, f)
        self.down1 = DownBlock(spatial_dims, f, 2 * f)
        self.down2 = DownBlock(spatial_dims, 2 * f, 4 * f)
        self.down3 = DownBlock(spatial_dims, 4 * f, 8 * f)
        self.down4 = DownBlock(spatial_dims, 8 * f, 8 * f)
        # side convolutions and the SA2 block
        self.side_conv2 = conv(dims[1], f, kernel_size=3, padding=1)
        self.side_conv3 = conv(dims[2], f, kernel_size=3, padding=1)
        self.side_conv4 = conv(dims[3], f, kernel_size=3, padding=1)
        self.side_conv5 = conv(dims[3], dims[3], kernel_size=3, padding=1)
        self.bottleneck = SA2Block(spatial_dims, f, dims, expansion=ffn_expansion, mlp_ratio=mlp_ratio)
        # AuA decoder
        k = gate_kernel_size
        self.up4 = AuAUpBlock(spatial_dims, dims[3], dims[3], 4 * f, k)
        self.up3 = AuAUpBlock(spatial_dims, dims[2], dims[2], 2 * f, k)
        self.up2 = AuAUpBlock(spatial_dims, dims[1], dims[1], f, k)
        self.up1 = AuAUpBlock(spatial_dims, dims[0], dims[0], f, k)
        # heads
        self.outc4 = conv(f, out_channels, kernel_size=1)
        if self.deep_supervision:
            self.outc3 = conv(f, out_channels, kernel_size=1)
            self.outc2 = conv(2 * f, out_channels, kernel_size=1)
            self.outc1 = conv(4 * f, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        check_network_input(x, "SA2Net", self.spatial_dims, self.in_channels, self.size_divisor)
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x2, x3, x4, x5 = self.side_conv2(x2), self.side_conv3(x3), self.side_conv4(x4), self.side_conv5(x5)
        s1, s2, s3, s4 = self.bottleneck((x1, x2, x3, x4))

        d4 = self.up4(x5, s4)
        d3 = self.up3(d4, s3)
        d2 = self.up2(d3, s2)
        d1 = self.up1(d2, s1)
        logits4 = self.outc4(d1)
        if not (self.training and self.deep_supervision):
            return logits4
        # The authors resize the decoder features and then apply the 1x1 heads; a 1x1 conv
        # commutes with bilinear/trilinear resizing (weights sum to 1), so resizing the
        # out_channels-wide logits instead gives the same result at a fraction of the cost.
        size = d1.shape[2:]
        logits3 = resize_to(self.outc3(d2), size, self._mode)
        logits2 = resize_to(self.outc2(d3), size, self._mode)
        logits1 = resize_to(self.outc1(d4), size, self._mode)
        return logits4, logits3, logits2, logits1
