"""MSA2Net: Multi-scale Adaptive Attention-guided Network (Kolahi et al., BMVC 2024).

Reimplementation of the network in xmindflow/MSA-2Net (commit 209ca722), written from the
released code's structure; see :class:`MSA2Net` for what is reproduced and where the released
code and the paper differ.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from svseg.networks.blocks import check_positive_int, check_pretrained, state_dict_mismatch_summary

__all__ = ["MSA2Net", "MultiScaleGatedAttn", "LKABlock", "DualTransformerBlock", "PatchExpand", "load_maxvit_weights"]

PathLike = Union[str, "os.PathLike[str]"]

_TIMM_NAME = "maxvit_rmlp_small_rw_224"
_ENC_CHANNELS = (96, 192, 384, 768)


# --------------------------------------------------------------------------------------------
# MASAG: multi-scale adaptive spatial attention gate (networks/masag.py, MultiScaleGatedAttn)
# --------------------------------------------------------------------------------------------
class _GlobalExtraction(nn.Module):
    """Channel-wise mean and max of the gate, fused by a 1x1 conv 2->1 and a BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Conv2d(2, 1, 1), nn.BatchNorm2d(1))

    def forward(self, g: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((g.mean(dim=1, keepdim=True), g.amax(dim=1, keepdim=True)), dim=1)
        return self.proj(pooled)


class _ContextExtraction(nn.Module):
    """Local context of the skip: 3x3 depthwise, dense 3x3 dilation-2 conv, 1x1 conv (all with BN)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dconv = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, padding=2, dilation=2),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        self.proj = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dconv(x))


class _MultiscaleFusion(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.local = _ContextExtraction(dim)
        self.global_ = _GlobalExtraction()
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.bn(self.local(x) + self.global_(g))


class MultiScaleGatedAttn(nn.Module):
    """MASAG (the paper's multi-scale adaptive spatial attention gate).

    ``x`` is the encoder skip and ``g`` the decoder gate, both ``(B, dim, H, W)``; the output has
    the same shape. Steps: multi-scale fusion (local context of ``x`` + global channel statistics
    of ``g``), a 1x1 conv to 2 maps with a softmax (spatial selection A/B), ``x' = A x + x``,
    ``g' = B g + g``, bidirectional gating ``sigmoid(g') x' * sigmoid(x') g'``, recalibration
    ``sigmoid(BN(1x1(.))) * x`` and an output 1x1 conv + BN (no residual, as released).

    Args:
        dim: number of channels of ``x`` and ``g``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.multi = _MultiscaleFusion(dim)
        self.selection = nn.Conv2d(dim, 2, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.bn = nn.BatchNorm2d(dim)
        self.bn_2 = nn.BatchNorm2d(dim)
        self.conv_block = nn.Sequential(nn.Conv2d(dim, dim, 1))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.selection(self.multi(x, g)), dim=1)
        a, b = weights[:, 0:1], weights[:, 1:2]
        x_att = a * x + x
        g_att = b * g + g
        interaction = (torch.sigmoid(g_att) * x_att) * (torch.sigmoid(x_att) * g_att)
        recal = torch.sigmoid(self.bn(self.proj(interaction)))
        return self.bn_2(self.conv_block(recal * x))


# --------------------------------------------------------------------------------------------
# LKA stage blocks (networks/msa2net.py: LKABlock and its parts)
# --------------------------------------------------------------------------------------------
class _DWConv3x3(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dwconv(x)


class _ConvMlp(nn.Module):
    """1x1 conv -> 3x3 depthwise conv -> GELU -> 1x1 conv (channels-first)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.dwconv = _DWConv3x3(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class _LargeKernelAttention(nn.Module):
    """LKA: 5x5 depthwise -> 7x7 depthwise dilation 3 -> 1x1, multiplied with the input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class _SpatialAttention(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = _LargeKernelAttention(dim)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x)))) + x


def _channels_last_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the channel axis of a (B, C, H, W) tensor (permute, norm, permute back)."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class LKABlock(nn.Module):
    """Large-kernel-attention block (D-LKA Net style, deformable-free) on ``(B, C, H, W)``.

    ``x + ls1 * SpatialAttention(LN(x))`` then ``x + ls2 * ConvMlp(LN(x))`` with layer scales
    initialised to 1e-2 and an MLP ratio of 4.

    Args:
        dim: channels.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
    """

    def __init__(self, dim: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _SpatialAttention(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _ConvMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(1e-2 * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(1e-2 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1[:, None, None] * self.attn(_channels_last_norm(self.norm1, x))
        x = x + self.layer_scale_2[:, None, None] * self.mlp(_channels_last_norm(self.norm2, x))
        return x


# --------------------------------------------------------------------------------------------
# DAEFormer dual transformer block (only used by variant="paper")
# --------------------------------------------------------------------------------------------
class _EfficientAttention(nn.Module):
    """Single-head efficient attention on ``(B, C, H, W)``: softmax of keys over space, of
    queries over channels, context = K V^T."""

    def __init__(self, dim: int, key_dim: int, value_dim: int) -> None:
        super().__init__()
        self.key_dim, self.value_dim = key_dim, value_dim
        self.keys = nn.Conv2d(dim, key_dim, 1)
        self.queries = nn.Conv2d(dim, key_dim, 1)
        self.values = nn.Conv2d(dim, value_dim, 1)
        self.reprojection = nn.Conv2d(value_dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        keys = torch.softmax(self.keys(x).reshape(n, self.key_dim, h * w), dim=2)
        queries = torch.softmax(self.queries(x).reshape(n, self.key_dim, h * w), dim=1)
        values = self.values(x).reshape(n, self.value_dim, h * w)
        context = keys @ values.transpose(1, 2)  # (n, dk, dv)
        attended = (context.transpose(1, 2) @ queries).reshape(n, self.value_dim, h, w)
        return self.reprojection(attended)


class _ChannelAttention(nn.Module):
    """Transposed (channel) attention with L2-normalised q/k and a learnable temperature; (B, N, C)."""

    def __init__(self, dim: int, num_heads: int = 8) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 4, 1)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (b, heads, c/heads, n)
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        out = (attn @ v).permute(0, 3, 1, 2).reshape(b, n, c)
        return self.proj(out)


class _MixFFN(nn.Module):
    """Linear -> 3x3 depthwise conv (on the token grid) -> GELU -> Linear; tokens (B, N, C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = _DWConv3x3(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        y = self.fc1(x)
        b, n, c = y.shape
        y = self.dwconv(y.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(y))


class DualTransformerBlock(nn.Module):
    """DAEFormer dual transformer block on tokens ``(B, H*W, C)``.

    Efficient (spatial) attention + MixFFN, then channel attention + MixFFN, each pre-norm with a
    residual. Used only by ``MSA2Net(variant="paper")``.

    Args:
        dim: token channels (key and value widths equal ``dim``, as in MSA2Net).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = _EfficientAttention(dim, dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.channel_attn = _ChannelAttention(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.mlp1 = _MixFFN(dim, 4 * dim)
        self.mlp2 = _MixFFN(dim, 4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        y = self.norm1(x).transpose(1, 2).reshape(b, c, h, w)
        x = x + self.attn(y).flatten(2).transpose(1, 2)
        x = x + self.mlp1(self.norm2(x), h, w)
        x = x + self.channel_attn(self.norm3(x))
        x = x + self.mlp2(self.norm4(x), h, w)
        return x


# --------------------------------------------------------------------------------------------
# Patch expanding (Swin-Unet style) and the decoder stage
# --------------------------------------------------------------------------------------------
class PatchExpand(nn.Module):
    """Token up-sampling: Linear, pixel-shuffle-like rearrange, LayerNorm.

    ``scale=2``: ``(B, H*W, C) -> (B, 4*H*W, C/2)`` (Linear C->2C, no bias).
    ``scale=4``: ``(B, H*W, C) -> (B, 16*H*W, C)`` (Linear C->16C, no bias; the final expand).

    Args:
        input_resolution: ``(H, W)`` of the input token grid.
        dim: input channels ``C``.
        scale: 2 or 4.
    """

    def __init__(self, input_resolution: tuple[int, int], dim: int, scale: int = 2) -> None:
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"scale must be 2 or 4, got {scale}.")
        self.input_resolution = tuple(input_resolution)
        self.scale = scale
        self.out_dim = dim // 2 if scale == 2 else dim
        self.expand = nn.Linear(dim, self.out_dim * scale * scale, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        s, c = self.scale, self.out_dim
        x = self.expand(x)
        b = x.shape[0]
        x = x.reshape(b, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * s * w * s, c)
        return self.norm(x)


def _xavier_init(module: nn.Module) -> None:
    """The authors' decoder init: Xavier-uniform Linear/Conv2d weights, zero biases, LN = (1, 0)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _DecoderStage(nn.Module):
    """One MSA2Net decoder stage (the modules actually executed by the released code).

    Args:
        input_resolution: ``(H, W)`` token grid of this stage.
        dim: channels of this stage (skip and gate).
        has_skip: whether an encoder skip is fused (``False`` for the coarsest stage, which
            only runs its patch expansion).
        use_masag: fuse with ``x1_linear(x1) + MASAG(skip, x1_linear(x1))`` instead of
            ``x1_linear(x1) + skip``.
        block: ``"lka"`` (two LKABlocks, channels-first) or ``"transformer"`` (two DAEFormer
            DualTransformerBlocks on tokens).
        out_channels: number of classes; only for the last stage (``is_last``).
        is_last: X4 patch expansion and a 1x1 conv head.
    """

    def __init__(
        self,
        input_resolution: tuple[int, int],
        dim: int,
        has_skip: bool,
        use_masag: bool,
        block: str = "lka",
        out_channels: int | None = None,
        is_last: bool = False,
    ) -> None:
        super().__init__()
        self.input_resolution = tuple(input_resolution)
        self.has_skip = has_skip
        self.use_masag = use_masag and has_skip
        self.block = block
        self.is_last = is_last
        if has_skip:
            self.x1_linear = nn.Linear(dim, dim)
            if self.use_masag:
                self.ag_attn = MultiScaleGatedAttn(dim)
            self.ag_attn_norm = nn.LayerNorm(dim)
        self.layer_up = PatchExpand(input_resolution, dim, scale=4 if is_last else 2)
        if is_last:
            self.last_layer = nn.Conv2d(dim, int(out_channels), 1)  # type: ignore[arg-type]
        if has_skip:
            if block == "lka":
                self.layer_lka_1 = LKABlock(dim)
                self.layer_lka_2 = LKABlock(dim)
            else:
                self.tran_layer1 = DualTransformerBlock(dim)
                self.tran_layer2 = DualTransformerBlock(dim)
        _xavier_init(self)

    def forward(self, x1: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """``x1``: tokens ``(B, H*W, C)`` from the coarser stage; ``skip``: ``(B, H, W, C)``."""
        if not self.has_skip or skip is None:
            return self.layer_up(x1)
        b, h, w, c = skip.shape
        n = h * w
        # Released-code quirk ("view, not permute"): the (B, H*W, C) token buffers of the skip
        # and of the gate are reinterpreted as (B, C, H, W) by a raw reshape, which scrambles
        # the spatial/channel layout. A faithful copy has to do the same.
        skip_bchw = skip.reshape(b, c, n // w, n // h)
        gate = self.x1_linear(x1).reshape(b, c, n // w, n // h)
        fused = gate + (self.ag_attn(skip_bchw, gate) if self.use_masag else skip_bchw)
        fused_hwc = self.ag_attn_norm(fused.permute(0, 2, 3, 1))  # LayerNorm over channels
        if self.block == "lka":
            y = fused_hwc.permute(0, 3, 1, 2).contiguous()
            y = self.layer_lka_2(self.layer_lka_1(y))
            # second raw reinterpretation: (B, C, H, W) buffer read as (B, W*H, C) tokens
            tokens = y.reshape(b, y.shape[3] * y.shape[2], y.shape[1])
        else:
            tokens = fused_hwc.reshape(b, n, c)  # proper (B, H*W, C) tokens
            tokens = self.tran_layer2(self.tran_layer1(tokens, h, w), h, w)
        out = self.layer_up(tokens)
        if self.is_last:
            out = self.last_layer(out.reshape(b, 4 * h, 4 * w, -1).permute(0, 3, 1, 2))
        return out


# --------------------------------------------------------------------------------------------
# Encoder (timm MaxViT-S rmlp) and weight loading
# --------------------------------------------------------------------------------------------
def _read_state_dict(path: PathLike) -> dict[str, torch.Tensor]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained: MaxViT weight file '{path}' does not exist.")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"pretrained: could not read MaxViT weights from '{path}': {e}") from e
    for key in ("state_dict_ema", "state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise ValueError(f"pretrained: '{path}' does not hold a state dict (got {type(state).__name__}).")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return dict(state)


def load_maxvit_weights(backbone: nn.Module, path: PathLike) -> None:
    """Load timm ``maxvit_rmlp_small_rw_224`` weights from a local file into ``backbone``.

    The file is timm's weight file (``maxvit_rmlp_small_rw_224_sw-6ef0ae4f.pth`` as the authors
    use, or the hub's ``model.safetensors``). Classifier keys (``head.*``) are ignored; every
    other key must match the backbone exactly (strict), otherwise a ``ValueError`` naming the
    file lists the missing / unexpected keys.

    Args:
        backbone: the timm MaxxVit module (``MSA2Net.backbone``).
        path: local weight file.
    """
    from timm.models.maxxvit import checkpoint_filter_fn

    state = _read_state_dict(path)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    state = checkpoint_filter_fn(state, backbone)
    mismatch = state_dict_mismatch_summary(backbone.state_dict(), state)
    if mismatch:
        raise ValueError(f"pretrained: '{os.fspath(path)}' is not a {_TIMM_NAME} weight file: {mismatch}.")
    backbone.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
class MSA2Net(nn.Module):
    """MSA2Net, "Multi-scale Adaptive Attention-guided Network for Medical Image Segmentation"
    (S. Kolahi, R. Azad, et al., BMVC 2024, arXiv:2407.21640), as the authors' released code
    (xmindflow/MSA-2Net, ``networks/msa2net.py``) runs it.

    Encoder: timm ``maxvit_rmlp_small_rw_224`` (MaxViT-S with relative-position MLP; 96/192/384/768
    channels at strides 4/8/16/32), the final 768-channel LayerNorm2d applied to the deepest
    feature as in the authors' 4-output backbone. Decoder (Swin-Unet-like, tokens):

    * ``decoder_3`` (stride 32): PatchExpand only (no skip).
    * ``decoder_2`` (stride 16): ``LN(x1_linear(x1) + skip)``, two LKABlocks, PatchExpand.
    * ``decoder_1`` (stride 8) and ``decoder_0`` (stride 4):
      ``LN(x1_linear(x1) + MASAG(skip, x1_linear(x1)))``, two LKABlocks, PatchExpand (x4 and a
      1x1 conv head in ``decoder_0``).

    Released code vs paper (``variant``):

    * ``"released"`` (default) is what produced the published numbers. In the authors' file the
      class ``MyDecoderLayerDAEFormer`` defines ``__init__``/``forward`` twice and Python keeps the
      second pair, so the two coarse stages are LKA stages, ``decoder_2`` fuses without MASAG, and
      MASAG runs only in the two finest stages. Modules the released code builds but never calls
      (22.6 M parameters: ``decoder_3``'s x1_linear/MASAG/norm/LKA blocks, ``decoder_2``'s MASAG,
      the backbone's 1->3 conv) are not built here, so the default model has exactly the
      authors' *used* parameter count: 71,013,299 for 9 classes at 224x224.
    * ``"paper"`` follows the paper text / the overridden first definition: MASAG on every skip
      (``decoder_2`` too) and two DAEFormer DualTransformerBlocks (efficient + channel attention
      with MixFFN) in ``decoder_2``. ``decoder_3`` still only expands (it has no skip in either
      definition). This builds 76,606,666 parameters for 9 classes; the README states 112.77 M
      (the released model builds 93.66 M in total, of which 71.0 M are used).
    * Both variants keep the released "view-not-permute" quirk: the ``(B, H*W, C)`` token buffers
      of the skip and gate are reinterpreted as ``(B, C, H, W)`` by a raw reshape (and, in LKA
      stages, the ``(B, C, H, W)`` output back to tokens likewise), scrambling spatial and channel
      positions. The paper describes a plain spatial fusion; the released behaviour is kept
      because that is what was trained and evaluated.
    * The authors' model has a 1->3 conv+BN+ReLU in its backbone that ``forward`` bypasses (it
      repeats gray input to 3 channels instead); it is not built here.

    Channels: ``in_channels=1`` is repeated to 3 (as the authors do), 3 is used as is; any other
    number goes through a 1x1 conv adapter ``input_adapter`` (``in_channels -> 3``, PyTorch
    default init), an svseg extension that adds ``3 * in_channels + 3`` parameters.

    Weights: module names follow the authors' file, so :meth:`load_authors_checkpoint` loads
    their trained ``Msa2Net`` checkpoints (e.g. the released Synapse weights). With the same
    weights, this model's eval-mode logits were checked to agree with the authors' code to
    within 1e-5 (224x224; the only difference is timm's fused attention in the backbone).

    Outputs: one logits tensor ``(B, out_channels, H, W)`` in train and eval mode (no
    activation; the authors train with :class:`svseg.losses.BoundaryDoULoss`, which applies
    the softmax). Train mode is slightly stochastic: timm's relative-position MLPs contain
    dropout, as in the authors' backbone.

    Example::

        >>> import torch
        >>> from svseg.networks import MSA2Net
        >>> net = MSA2Net(spatial_dims=2, in_channels=1, out_channels=9, img_size=224).eval()
        >>> net(torch.randn(2, 1, 224, 224)).shape
        torch.Size([2, 9, 224, 224])

    Args:
        spatial_dims: must be 2 (MaxViT is a 2D backbone); anything else raises ``ValueError``.
        in_channels: input channels (1 and 3 as the authors; others via a 1x1 adapter).
        out_channels: number of classes (9 for Synapse).
        img_size: square input size; a multiple of 32 (the MaxViT window/grid partitions are
            ``img_size // 32``; 224 -> 7 as trained by the authors, 256, 448, ... also work).
            Inputs of another size raise ``ValueError`` in ``forward``.
        pretrained: ``False`` (random init), ``True`` (timm hub weights, needs internet) or the
            path of a local timm MaxViT weight file (``maxvit_rmlp_small_rw_224_sw-6ef0ae4f.pth``
            or ``model.safetensors``), loaded strictly into the backbone.
        variant: ``"released"`` (default) or ``"paper"``, see above.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 9,
        img_size: int = 224,
        pretrained: bool | PathLike = False,
        variant: str = "released",
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise ValueError(f"spatial_dims must be 2 for MSA2Net (MaxViT is a 2D backbone), got {spatial_dims}.")
        check_positive_int("in_channels", in_channels)
        check_positive_int("out_channels", out_channels)
        if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 32 or img_size % 32:
            raise ValueError(f"img_size must be a positive multiple of 32 (MaxViT partitions img_size // 32), got {img_size!r}.")
        if variant not in ("released", "paper"):
            raise ValueError(f"variant must be 'released' or 'paper', got {variant!r}.")
        check_pretrained(pretrained)

        import timm

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.img_size = img_size
        self.variant = variant

        self.input_adapter = nn.Conv2d(in_channels, 3, 1) if in_channels not in (1, 3) else None

        hub = pretrained is True
        self.backbone = timm.create_model(_TIMM_NAME, pretrained=hub, num_classes=0, img_size=img_size)
        if isinstance(pretrained, (str, os.PathLike)):
            load_maxvit_weights(self.backbone, pretrained)

        base = img_size // 32
        c0, c1, c2, c3 = _ENC_CHANNELS
        paper = variant == "paper"
        self.decoder_3 = _DecoderStage((base, base), c3, has_skip=False, use_masag=False)
        self.decoder_2 = _DecoderStage(
            (2 * base, 2 * base), c2, has_skip=True, use_masag=paper, block="transformer" if paper else "lka"
        )
        self.decoder_1 = _DecoderStage((4 * base, 4 * base), c1, has_skip=True, use_masag=True)
        self.decoder_0 = _DecoderStage(
            (8 * base, 8 * base), c0, has_skip=True, use_masag=True, out_channels=out_channels, is_last=True
        )

    def load_authors_checkpoint(self, path: PathLike) -> None:
        """Load a checkpoint of the authors' ``Msa2Net`` (e.g. their released Synapse weights).

        The authors' keys ``backbone.backbone.*`` map to ``backbone.*``; the decoder keys are the
        same as here. Keys of modules the released code never calls (``backbone.conv``,
        ``decoder_3``'s x1_linear/ag_attn/ag_attn_norm/layer_lka_*, ``decoder_2.ag_attn``) are
        dropped. Every parameter and buffer of this model must be found (strict), otherwise a
        ``ValueError`` naming the file is raised. Only the default ``variant="released"`` with
        ``in_channels`` 1 or 3 matches the authors' model.

        Args:
            path: local ``.pth`` file saved by the authors' ``trainer.py`` (a plain state dict,
                optionally wrapped in ``state_dict``/``model`` or saved from DataParallel).
        """
        state = _read_state_dict(path)
        unused = ("backbone.conv.",) + tuple(
            f"decoder_3.{m}." for m in ("x1_linear", "ag_attn", "ag_attn_norm", "layer_lka_1", "layer_lka_2")
        )
        if self.variant == "released":
            unused += ("decoder_2.ag_attn.",)
        mapped = {}
        for k, v in state.items():
            if k.startswith(unused):
                continue
            if k.startswith("backbone.backbone."):
                k = "backbone." + k[len("backbone.backbone."):]
            mapped[k] = v
        mismatch = state_dict_mismatch_summary(self.state_dict(), mapped)
        if mismatch:
            raise ValueError(
                f"'{os.fspath(path)}' does not match this MSA2Net(variant={self.variant!r}, in_channels={self.in_channels}, "
                f"out_channels={self.out_channels}): {mismatch}."
            )
        self.load_state_dict(mapped, strict=True)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features ``[s4, s8, s16, norm(s32)]`` as ``(B, C, H, W)`` tensors."""
        bb = self.backbone
        x = bb.stem(x)
        feats = []
        for stage in bb.stages:
            x = stage(x)
            feats.append(x)
        feats[-1] = bb.norm(feats[-1])
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"MSA2Net expects a (B, C, H, W) input, got shape {tuple(x.shape)}.")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"MSA2Net was built with in_channels={self.in_channels}, got input with {x.shape[1]} channels.")
        if x.shape[2] != self.img_size or x.shape[3] != self.img_size:
            raise ValueError(
                f"MSA2Net was built with img_size={self.img_size}, got input of size {tuple(x.shape[2:])}; "
                "resize the input or build the network with the matching img_size."
            )
        if self.input_adapter is not None:
            x = self.input_adapter(x)
        elif self.in_channels == 1:
            x = x.repeat(1, 3, 1, 1)
        enc0, enc1, enc2, enc3 = self.encode(x)
        b, c = enc3.shape[:2]
        tokens = self.decoder_3(enc3.permute(0, 2, 3, 1).reshape(b, -1, c))
        tokens = self.decoder_2(tokens, enc2.permute(0, 2, 3, 1))
        tokens = self.decoder_1(tokens, enc1.permute(0, 2, 3, 1))
        return self.decoder_0(tokens, enc0.permute(0, 2, 3, 1))
