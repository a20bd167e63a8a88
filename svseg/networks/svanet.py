"""SvANet: scale-variant attention network for small medical objects.

Reimplementation of

    Wei Dai, Rui Liu, Zixuan Wu, Tianyi Wu, Min Wang, Junxian Zhou, Yixuan Yuan, Jun Liu,
    "Exploiting Scale-Variant Attention for Segmenting Small Medical Objects",
    IEEE Transactions on Neural Networks and Learning Systems, 2026. arXiv:2407.07720.
    Authors' code: https://github.com/anthonyweidai/SvANet

The configuration reproduced is the one of the authors' ``shell/main.sh`` (``--model_name resnet50
--seg_head_name deeplabv3 --seg_feature_guide 2 --fg_start_stage 1`` with the ``opts.py`` defaults):
a torchvision-layout ResNet-50 encoder, a DeepLabv3 ASPP head (rates 12/24/36) on stage 5, four
feature-guide branches (bottleneck with Monte-Carlo attention + AssembleFormer), cross-scale layers
with scale-variant attention, a concatenating top-down link with AssembleFormers, and one 1x1
classifier on all decoded features. The default 2D build has exactly the authors' 202,434,290
parameters. Every line here was written for svseg; nothing is copied from the authors' repository.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Act, Conv, Dropout, Norm
from torch import nn

from svseg.networks.blocks import (
    ResNetEncoder,
    adapt_stem_channels,
    check_positive_int,
    extract_patches,
    fold_patches,
    interp_mode,
    state_dict_mismatch,
)

__all__ = ["SvANet"]

# torchvision ImageNet weights the authors start from (resnet50-11ad3fa6.pth, renamed resnet50-2.pth)
TORCHVISION_WEIGHTS = "ResNet50_Weights.IMAGENET1K_V2"

# the authors' BaseConv2d uses BatchNorm with eps 1e-3 and momentum 0.1 everywhere (encoder included)
_BN_EPS = 1e-3


def _make_divisible(value: float, divisor: int) -> int:
    """Round ``value`` to a multiple of ``divisor`` (the MobileNet rule, never more than 10% down)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class ConvNormAct(nn.Sequential):
    """Convolution, optional batch norm, optional activation (the authors' ``BaseConv2d``).

    The convolution has a bias exactly when there is no norm (the authors' default).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        dilation: int = 1,
        norm: bool = False,
        act: str | None = None,
        bias: bool | None = None,
        transposed: bool = False,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 * dilation
        bias = (not norm) if bias is None else bias
        if transposed:
            self.conv = Conv[Conv.CONVTRANS, spatial_dims](
                in_channels, out_channels, kernel_size, stride, padding, output_padding=stride - 1, bias=bias
            )
        else:
            self.conv = Conv[Conv.CONV, spatial_dims](
                in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, bias=bias
            )
        if norm:
            self.norm = Norm[Norm.BATCH, spatial_dims](out_channels, eps=_BN_EPS, momentum=0.1)
        if act == "relu":
            self.act = Act[Act.RELU](inplace=True)
        elif act == "silu":
            self.act = nn.SiLU(inplace=True)
        elif act == "sigmoid":
            self.act = Act[Act.SIGMOID]()
        elif act is not None:  # pragma: no cover - internal use only
            raise ValueError(f"unknown act {act!r}")


class StochasticDepth(nn.Module):
    """Per-sample residual-branch drop (torchvision ``StochasticDepth(p, "row")``), torch RNG."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * noise.div_(keep)


# ------------------------------------------------------------------------------ attention blocks
class MoCAttention(nn.Module):
    """Monte-Carlo attention: an SE gate whose descriptor is a random sub-region average in training.

    Training: draw a pool resolution ``k`` from ``pool_res``; if ``shuffle`` (the authors' ``moc_order``)
    permute the spatial positions (one permutation for the whole batch), average-pool to ``k^d``
    cells and keep one random cell. Eval: global average pool (deterministic).
    """

    def __init__(self, spatial_dims: int, channels: int, pool_res: Sequence[int] = (1, 2, 3), shuffle: bool = True, squeeze_factor: int = 4) -> None:
        super().__init__()
        hidden = max(_make_divisible(channels // squeeze_factor, 8), 32)
        self.pool_res = tuple(int(k) for k in pool_res)
        self.shuffle = shuffle
        self.spatial_dims = spatial_dims
        self.se = nn.Sequential(
            ConvNormAct(spatial_dims, channels, hidden, 1, act="relu"),
            ConvNormAct(spatial_dims, hidden, channels, 1, act="sigmoid"),
        )

    def _descriptor(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, x.ndim))
        if not self.training:
            return x.mean(dim=dims, keepdim=True)
        k = self.pool_res[int(torch.randint(len(self.pool_res), (1,)).item())]
        if self.shuffle:
            flat = x.flatten(2)
            x = flat[:, :, torch.randperm(flat.shape[-1], device=x.device)].reshape(x.shape)
        pooled = F.adaptive_avg_pool2d(x, k) if self.spatial_dims == 2 else F.adaptive_avg_pool3d(x, k)
        if k > 1:
            flat = pooled.flatten(2)
            cell = int(torch.randint(flat.shape[-1], (1,)).item())
            pooled = flat[:, :, cell].reshape(flat.shape[:2] + (1,) * self.spatial_dims)
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.se(self._descriptor(x))


class LinearSelfAttention(nn.Module):
    """MobileViTv2 separable (linear) self-attention on unfolded patches ``(B, d, P, N)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.qkv_proj = nn.Conv2d(dim, 1 + 2 * dim, 1)
        self.out_proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = torch.split(self.qkv_proj(x), [1, self.dim, self.dim], dim=1)
        scores = torch.softmax(q, dim=-1)
        context = (k * scores).sum(dim=-1, keepdim=True)
        return self.out_proj(F.relu(v) * context)


class LinearAttnFFN(nn.Module):
    """Pre-norm linear attention and pre-norm 1x1 FFN (SiLU), each with a residual."""

    def __init__(self, dim: int, ffn_dim: int) -> None:
        super().__init__()
        self.pre_norm_attn = nn.Sequential(nn.BatchNorm2d(dim), LinearSelfAttention(dim))
        self.pre_norm_ffn = nn.Sequential(
            nn.BatchNorm2d(dim), nn.Conv2d(dim, ffn_dim, 1), nn.SiLU(inplace=True), nn.Conv2d(ffn_dim, dim, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pre_norm_attn(x)
        return x + self.pre_norm_ffn(x)


class AssembleFormer(nn.Module):
    """AssembleFormer (MobileViTv3-v2 style): local conv + patch-wise linear attention, fused.

    Local: 3x3 conv + BN + SiLU, 1x1 conv to C/2. Global: unfold into 2^d-pixel patches
    ``(B, C/2, 2^d, N)``, ``num_attn_blocks`` x LinearAttnFFN, BN, fold. Then concatenate local and
    global (C), 1x1 conv + BN to C, and add the input. Spatial sizes must be even.
    """

    def __init__(self, spatial_dims: int, channels: int, num_attn_blocks: int = 2, ffn_multiplier: float = 2.0, patch: int = 2) -> None:
        super().__init__()
        dim = channels // 2
        self.spatial_dims = spatial_dims
        self.patch = patch
        self.local_rep = nn.Sequential(
            ConvNormAct(spatial_dims, channels, channels, 3, norm=True, act="silu"),
            ConvNormAct(spatial_dims, channels, dim, 1, bias=False),
        )
        ffn_dim = _make_divisible(ffn_multiplier * dim, 16)
        self.global_rep = nn.Sequential(*[LinearAttnFFN(dim, ffn_dim) for _ in range(num_attn_blocks)], nn.BatchNorm2d(dim))
        self.conv_proj = ConvNormAct(spatial_dims, 2 * dim, channels, 1, norm=True)

    def to_patches(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` -> ``(B, C, patch**d, N)``: pixel-in-patch axis first, as the authors' ``F.unfold``."""
        return extract_patches(x, self.patch).transpose(2, 3).contiguous()

    def from_patches(self, x: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """Inverse of :meth:`to_patches` for spatial ``sizes`` (each a multiple of ``patch``)."""
        return fold_patches(x.transpose(2, 3), self.patch, sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local_rep(x)
        sizes = local.shape[2:]
        glob = self.from_patches(self.global_rep(self.to_patches(local)), sizes)
        return x + self.conv_proj(torch.cat((glob, local), dim=1))


# ---------------------------------------------------------------------------- feature-guide head
class FGBottleneck(nn.Module):
    """Feature-guide branch block: bottleneck (expansion 2) with MoCAttention, residual, AssembleFormer."""

    def __init__(self, spatial_dims: int, channels: int, pool_res: Sequence[int], moc_shuffle: bool, num_attn_blocks: int) -> None:
        super().__init__()
        hidden = _make_divisible(channels * 2.0, 8)
        self.bottleneck = nn.Sequential(
            ConvNormAct(spatial_dims, channels, hidden, 1, norm=True, act="relu"),
            ConvNormAct(spatial_dims, hidden, hidden, 3, norm=True, act="relu"),
            MoCAttention(spatial_dims, hidden, pool_res, moc_shuffle),
            ConvNormAct(spatial_dims, hidden, channels, 1, norm=True),
        )
        self.vit = AssembleFormer(spatial_dims, channels, num_attn_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x + self.bottleneck(x))


class BasicBlock(nn.Module):
    """3x3 conv (stride) + BN + ReLU, then 1x1 conv + BN + ReLU (the authors' fgModules.BasicBlock)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, out_channels, 3, stride, norm=True, act="relu"),
            ConvNormAct(spatial_dims, out_channels, out_channels, 1, norm=True, act="relu"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CSLayer(nn.Module):
    """Cross-scale layer with scale-variant attention (SvAttn).

    A chain of ``num_blocks`` stride-2 BasicBlocks maps a branch to a deeper branch's scale and
    channels. Each of the ``num_blocks + 1`` chain features is average-pooled to ``pool_size^d`` and
    squeezed by a 1x1 conv to ``out_channels``. In training each pooled map is multiplied by one of
    ``num_blocks + 1`` disjoint random binary masks (cells shuffled and masks reassigned every call)
    and the maps are summed; in eval they are averaged without masks. The result is globally
    pooled, passed through a sigmoid and gates the chain output channel-wise.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, num_blocks: int, pool_size: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.num_blocks = num_blocks
        self.pool_size = pool_size
        self.convs = nn.ModuleList(
            BasicBlock(spatial_dims, in_channels, in_channels if i < num_blocks - 1 else out_channels, 2) for i in range(num_blocks)
        )
        self.squeezes = nn.ModuleList(
            ConvNormAct(spatial_dims, in_channels if i < num_blocks else out_channels, out_channels, 1) for i in range(num_blocks + 1)
        )
        # cell labels 1..num_blocks+1 drawn once at build (as the authors), from torch's RNG
        grid = torch.randint(1, num_blocks + 2, (pool_size,) * spatial_dims)
        self.register_buffer("mask_grid", grid, persistent=False)

    def sample_masks(self) -> torch.Tensor:
        """Draw the training masks: ``(num_blocks + 1, *pool grid)``, binary, disjoint, covering the grid.

        The cells of the build-time label grid are shuffled and the labels are re-assigned to the
        chain features in a random order (the authors' ``shuffleTensor`` + ``random.shuffle``).
        """
        flat = self.mask_grid.flatten()
        grid = flat[torch.randperm(flat.numel(), device=flat.device)].reshape(self.mask_grid.shape)
        order = torch.randperm(self.num_blocks + 1, device=flat.device) + 1
        return torch.stack([grid == order[i] for i in range(self.num_blocks + 1)]).to(torch.float32)

    def _pool(self, x: torch.Tensor, size: int) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, size) if self.spatial_dims == 2 else F.adaptive_avg_pool3d(x, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in self.convs:
            feats.append(conv(feats[-1]))
        n = len(feats)
        if self.training:
            masks = self.sample_masks().to(x.dtype)
            attn = None
            for i, (f, squeeze) in enumerate(zip(feats, self.squeezes)):
                term = squeeze(self._pool(f, self.pool_size)) * masks[i][None, None]
                attn = term if attn is None else attn + term
        else:
            attn = None
            for f, squeeze in zip(feats, self.squeezes):
                term = squeeze(self._pool(f, self.pool_size))
                attn = term if attn is None else attn + term
            attn = attn / n
        gate = torch.sigmoid(attn.mean(dim=tuple(range(2, attn.ndim)), keepdim=True))
        return feats[-1] * gate


class UpLink(nn.Module):
    """1x1 conv to C/4, 3x3 stride-2 transposed conv, 1x1 conv to the target C (each BN + ReLU)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = in_channels // 4
        self.tp_conv = nn.Sequential(
            ConvNormAct(spatial_dims, in_channels, mid, 1, norm=True, act="relu"),
            ConvNormAct(spatial_dims, mid, mid, 3, 2, norm=True, act="relu", transposed=True),
            ConvNormAct(spatial_dims, mid, out_channels, 1, norm=True, act="relu"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tp_conv(x)


class FGLink(nn.Module):
    """Top-down concatenating link (``fg_link = 2``) from the deepest encoder stage to the first branch.

    Step i: UpLink to the next shallower branch's scale/channels, concatenate with that branch,
    BasicBlock(2C -> C), AssembleFormer(C). Returns the decoded features, deepest first.
    """

    def __init__(self, spatial_dims: int, deep_channels: int, branch_channels: Sequence[int], num_attn_blocks: int) -> None:
        super().__init__()
        self.up_links = nn.ModuleList()
        self.cat_link_convs = nn.ModuleList()
        self.vit_layers = nn.ModuleList()
        in_ch = deep_channels
        for out_ch in reversed(list(branch_channels)):
            self.up_links.append(UpLink(spatial_dims, in_ch, out_ch))
            self.cat_link_convs.append(BasicBlock(spatial_dims, 2 * out_ch, out_ch))
            self.vit_layers.append(AssembleFormer(spatial_dims, out_ch, num_attn_blocks))
            in_ch = out_ch

    def forward(self, branches: list[torch.Tensor], deepest: torch.Tensor) -> list[torch.Tensor]:
        decoded = []
        y = deepest
        for up, cat_conv, vit, f in zip(self.up_links, self.cat_link_convs, self.vit_layers, reversed(branches)):
            y = vit(cat_conv(torch.cat((up(y), f), dim=1)))
            decoded.append(y)
        return decoded


class ASPPPooling(nn.Module):
    """Global average pool, 1x1 conv + BN + ReLU, broadcast back to the input size."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.conv = ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm=True, act="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        y = self.conv(x.mean(dim=tuple(range(2, x.ndim)), keepdim=True))
        return F.interpolate(y, size=size, mode=interp_mode(self.spatial_dims), align_corners=False)


class ASPP(nn.Module):
    """DeepLabv3 atrous spatial pyramid pooling: 1x1, three dilated 3x3, image pooling; 1x1 project; dropout."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, rates: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm=True, act="relu")]
            + [ConvNormAct(spatial_dims, in_channels, out_channels, 3, dilation=r, norm=True, act="relu") for r in rates]
            + [ASPPPooling(spatial_dims, in_channels, out_channels)]
        )
        self.project = ConvNormAct(spatial_dims, (len(rates) + 2) * out_channels, out_channels, 1, norm=True, act="relu")
        self.dropout = Dropout[Dropout.DROPOUT, spatial_dims](dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.project(torch.cat([conv(x) for conv in self.convs], dim=1)))


# ------------------------------------------------------------------------------------- network
def torchvision_resnet50_state_dict() -> dict:
    """Download (torchvision cache) the ImageNet ResNet-50 weights the authors used."""
    from torchvision.models import ResNet50_Weights

    return ResNet50_Weights.IMAGENET1K_V2.get_state_dict(progress=True)


class SvANet(nn.Module):
    """SvANet (Dai et al., TNNLS 2026, arXiv:2407.07720): scale-variant attention for small objects.

    Architecture (the authors' ``shell/main.sh`` configuration, ``seg_feature_guide 2``):

    - encoder: ResNet-50 (``encoder``, torchvision parameter names), stages at strides 2..32;
    - ``aspp``: DeepLabv3 ASPP on stage 5 (rates 12/24/36, 512 channels, dropout 0.1);
    - ``conv_b[b]``: one feature-guide branch per encoder stage ``fg_start_stage..4``: a bottleneck
      with Monte-Carlo attention (``MoCAttention``) and an ``AssembleFormer``;
    - ``conv_r[bt]`` / ``drop_r[bt]``: for every branch pair b < t a cross-scale layer (``CSLayer``,
      scale-variant attention) whose output, after stochastic depth 0.2*b'/B, is added to branch t;
    - ``link_head``: top-down concatenating link (``FGLink``) from stage 5 through all branches;
    - ``classifier``: one 1x1 conv on the concatenation of all decoded branches and the ASPP output,
      resized to the first branch's scale, then upsampled to the input size.

    The default 2D build (``SvANet(2, 3, 2)``) has 202,434,290 parameters, the authors' count.
    Submodule names: ``encoder``, ``conv_b.1``..``conv_b.4`` (authors' ConvB1..4), ``conv_r.12``..
    ``conv_r.34`` (Convr12..34), ``link_head`` (LinkHead), ``aspp`` (Aspp), ``classifier``.

    Output: one logit map ``(B, out_channels, *spatial)`` at the input size, in train and eval mode
    (no deep supervision, no auxiliary head, no activation). The authors train it with
    cross-entropy (ignore index 255) and upsample to their fixed ``resize_shape`` 512; here the
    output follows the input size (identical for 512 inputs).

    Randomness: in train mode MoCAttention draws its pool resolution, pixel shuffle and kept cell,
    CSLayer shuffles its SvAttn masks, and stochastic depth / ASPP dropout draw masks, all from
    torch's RNG, so ``torch.manual_seed`` reproduces a training forward. (The authors drew the pool
    resolution with ``numpy.random`` and the mask order with python ``random``; draws differ, the
    distributions are the same.) Eval mode is deterministic: global pooling and mask-free averaging.

    Normalisation: every batch norm outside the AssembleFormer attention blocks uses eps 1e-3 (the
    authors' ``BaseConv2d``), the encoder's included, so the torchvision weights run with eps 1e-3
    exactly as in the authors' training. The authors normalise inputs with the ImageNet mean/std.

    Input sizes: every spatial size must be a multiple of 32 (stride-32 encoder, the stride-2
    transposed convs of the link must meet the encoder stages, and AssembleFormer's 2x2 patches).
    Train mode needs batch > 1 (batch norm after the ASPP global pool), as in the authors' code.

    Args:
        spatial_dims: 2, or 3 for an inflated 3D variant (no pretrained 3D weights exist; a full
            width 3D ResNet-50 triples the parameters, use ``base_width`` to shrink it).
        in_channels: input channels (3 for the ImageNet encoder; other values adapt ``conv1`` when
            loading pretrained weights: summed for 1 channel, repeated and rescaled otherwise).
        out_channels: number of classes including background.
        pretrained: ``False``; ``True`` loads torchvision's ``ResNet50_Weights.IMAGENET1K_V2``
            (resnet50-11ad3fa6.pth, the authors' file; needs internet or the torchvision cache); or a
            local path to a torchvision-layout ResNet-50 state dict (``fc.*`` keys are ignored).
        fg_start_stage: first encoder stage (1..4) that gets a feature-guide branch (paper: 1).
        img_size: the training resize the authors use (512); sets the SvAttn pool sizes
            ``max(img_size // 2**(stage + blocks) // svattn_divisor, 4)``.
        svattn_divisor: SvAttn pool-size divisor (paper: 4).
        moc_pool_res: Monte-Carlo attention pool resolutions (paper: (1, 2, 3)).
        moc_shuffle: shuffle pixels before Monte-Carlo pooling (the authors' ``moc_order``, True).
        aspp_rates: ASPP dilation rates (paper: (12, 24, 36)).
        aspp_channels: ASPP output channels (512).
        aspp_dropout: dropout after the ASPP projection (0.1).
        num_attn_blocks: linear-attention blocks per AssembleFormer (2).
        cross_drop_rate: maximum stochastic-depth rate of the cross-scale paths (0.2).
        base_width: ResNet stem width (64); every encoder and head width scales with it. Values
            other than 64 have no pretrained weights (a reduced-width option for tests / 3D).

    Raises:
        ValueError: an invalid argument (the message names it).
        FileNotFoundError: ``pretrained`` is a path that does not exist.

    Example:
        >>> import torch
        >>> from svseg.networks import SvANet
        >>> net = SvANet(spatial_dims=2, in_channels=3, out_channels=2).eval()
        >>> with torch.no_grad():
        ...     logits = net(torch.randn(1, 3, 512, 512))
        >>> logits.shape
        torch.Size([1, 2, 512, 512])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 2,
        pretrained: bool | str | os.PathLike = False,
        fg_start_stage: int = 1,
        img_size: int = 512,
        svattn_divisor: int = 4,
        moc_pool_res: Sequence[int] = (1, 2, 3),
        moc_shuffle: bool = True,
        aspp_rates: Sequence[int] = (12, 24, 36),
        aspp_channels: int = 512,
        aspp_dropout: float = 0.1,
        num_attn_blocks: int = 2,
        cross_drop_rate: float = 0.2,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        self._validate(
            spatial_dims, in_channels, out_channels, pretrained, fg_start_stage, img_size, svattn_divisor,
            moc_pool_res, aspp_rates, aspp_channels, aspp_dropout, num_attn_blocks, cross_drop_rate, base_width,
        )
        self.spatial_dims = spatial_dims
        self.fg_start_stage = fg_start_stage
        # ResNet-50 (torchvision names); its five outputs are the authors' forwardTuple (stem + 4 stages)
        self.encoder = ResNetEncoder(spatial_dims, in_channels, stem_width=base_width, norm_eps=_BN_EPS)
        stage_channels = self.encoder.out_channels  # stages 1..5
        branch_stages = list(range(fg_start_stage, 5))  # stage 5 goes to ASPP only
        branch_channels = [stage_channels[s - 1] for s in branch_stages]
        num_branches = len(branch_stages)
        self.num_branches = num_branches

        self.conv_b = nn.ModuleDict()
        self.conv_r = nn.ModuleDict()
        self.drop_r = nn.ModuleDict()
        for b in range(num_branches):
            self.conv_b[str(b + 1)] = FGBottleneck(spatial_dims, branch_channels[b], moc_pool_res, moc_shuffle, num_attn_blocks)
        for b in range(num_branches):
            rate = cross_drop_rate * b / num_branches
            for t in range(b + 1, num_branches):
                blocks = t - b
                stage = branch_stages[b]
                pool_size = int(max(img_size // 2 ** (stage + blocks) // svattn_divisor, 4))
                key = f"{b + 1}{t + 1}"
                self.conv_r[key] = CSLayer(spatial_dims, branch_channels[b], branch_channels[t], blocks, pool_size)
                self.drop_r[key] = StochasticDepth(rate)
        self.link_head = FGLink(spatial_dims, stage_channels[4], branch_channels, num_attn_blocks)
        self.aspp = ASPP(spatial_dims, stage_channels[4], aspp_channels, aspp_rates, aspp_dropout)
        self.classifier = ConvNormAct(spatial_dims, sum(branch_channels) + aspp_channels, out_channels, 1)

        if pretrained:
            self.load_encoder_weights(pretrained)

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _validate(spatial_dims, in_channels, out_channels, pretrained, fg_start_stage, img_size, svattn_divisor,
                  moc_pool_res, aspp_rates, aspp_channels, aspp_dropout, num_attn_blocks, cross_drop_rate, base_width) -> None:
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("img_size", img_size),
                        ("svattn_divisor", svattn_divisor), ("aspp_channels", aspp_channels),
                        ("num_attn_blocks", num_attn_blocks), ("base_width", base_width)):
            check_positive_int(name, v)
        if isinstance(fg_start_stage, bool) or fg_start_stage not in (1, 2, 3, 4):
            raise ValueError(f"fg_start_stage must be 1, 2, 3 or 4 (stage 5 feeds the ASPP only), got {fg_start_stage!r}")
        if base_width % 8 != 0:
            raise ValueError(f"base_width must be a multiple of 8 (the head halves and quarters it), got {base_width}")
        pool_res = tuple(moc_pool_res) if isinstance(moc_pool_res, (list, tuple)) else None
        if not pool_res or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in pool_res):
            raise ValueError(f"moc_pool_res must be a non-empty sequence of positive ints, got {moc_pool_res!r}")
        rates = tuple(aspp_rates) if isinstance(aspp_rates, (list, tuple)) else None
        if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
            raise ValueError(f"aspp_rates must be a non-empty sequence of positive ints, got {aspp_rates!r}")
        if not 0.0 <= float(aspp_dropout) < 1.0:
            raise ValueError(f"aspp_dropout must be in [0, 1), got {aspp_dropout!r}")
        if not 0.0 <= float(cross_drop_rate) < 1.0:
            raise ValueError(f"cross_drop_rate must be in [0, 1), got {cross_drop_rate!r}")
        if pretrained is not False and pretrained is not None:
            if pretrained is True:
                pass
            elif not isinstance(pretrained, (str, os.PathLike)):
                raise ValueError(f"pretrained must be False, True or a path to a state dict, got {type(pretrained).__name__}")
            elif not os.path.isfile(os.fspath(pretrained)):
                raise FileNotFoundError(f"pretrained: weight file not found: {os.fspath(pretrained)}")
            if spatial_dims != 2:
                raise ValueError("pretrained weights exist only for spatial_dims=2 (there is no 3D ImageNet ResNet-50)")
            if base_width != 64:
                raise ValueError(f"pretrained weights need base_width=64 (the ResNet-50 width), got {base_width}")

    def load_encoder_weights(self, pretrained: bool | str | os.PathLike) -> None:
        """Load a torchvision-layout ResNet-50 state dict into ``encoder``.

        Args:
            pretrained: ``True`` (torchvision ``IMAGENET1K_V2``) or a path to a ``.pth`` state dict (also
                accepted: a dict holding it under ``state_dict`` or ``model``; a ``module.`` prefix is
                stripped; ``fc.*`` is ignored).

        Raises:
            FileNotFoundError: the path does not exist.
            ValueError: the file is not a ResNet-50 state dict (missing / unexpected / mis-shaped keys).
        """
        if pretrained is True:
            state = torchvision_resnet50_state_dict()
            source = TORCHVISION_WEIGHTS
        else:
            path = os.fspath(pretrained)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"pretrained: weight file not found: {path}")
            state = torch.load(path, map_location="cpu", weights_only=True)
            source = path
        if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
            for key in ("state_dict", "model"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if not isinstance(state, dict):
            raise ValueError(f"pretrained: {source} does not hold a state dict")
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.encoder.state_dict()
        w = state.get("conv1.weight")
        if isinstance(w, torch.Tensor) and w.ndim == 4:
            state["conv1.weight"] = adapt_stem_channels(w, own["conv1.weight"].shape[1])
        missing, unexpected, bad = state_dict_mismatch(own, state)
        if missing or unexpected:
            raise ValueError(
                f"pretrained: {source} is not a torchvision ResNet-50 state dict "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        if bad:
            raise ValueError(f"pretrained: {source} has mis-shaped tensors for {bad[:5]}")
        self.encoder.load_state_dict(state, strict=True)

    # ------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, out_channels, *spatial)`` for ``x`` of shape ``(B, in_channels, *spatial)``."""
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(f"expected a {self.spatial_dims + 2}D input (B, C, *spatial), got shape {tuple(x.shape)}")
        in_size = x.shape[2:]
        for s in in_size:
            if s % 32 != 0:
                raise ValueError(f"every spatial size must be a multiple of 32, got {tuple(in_size)}")
        feats = self.encoder(x)
        head = self.aspp(feats[4])
        out = [feats[s - 1] for s in range(self.fg_start_stage, 5)]
        out = [self.conv_b[str(b + 1)](o) for b, o in enumerate(out)]
        for b in range(self.num_branches):
            for t in range(b + 1, self.num_branches):
                key = f"{b + 1}{t + 1}"
                out[t] = out[t] + self.drop_r[key](self.conv_r[key](out[b]))
        decoded = self.link_head(out, feats[4])
        decoded.reverse()
        decoded.append(head)
        mode = interp_mode(self.spatial_dims)
        size = decoded[0].shape[2:]
        fused = torch.cat([decoded[0]] + [F.interpolate(d, size=size, mode=mode, align_corners=True) for d in decoded[1:]], dim=1)
        logits = self.classifier(fused)
        return F.interpolate(logits, size=in_size, mode=mode, align_corners=True)
