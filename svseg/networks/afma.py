"""AFMA: across feature map attention wrapped around a segmentation model.

Sang, Sun, Yang, Xiong, Zhang, Luo: "Small-Object Sensitive Segmentation Using Across Feature
Map Attention", IEEE TPAMI 45(5), 2023, DOI 10.1109/TPAMI.2022.3211171. Authors' code:
https://github.com/ShengtianSang/AFMA (an smp 0.2-era copy of segmentation_models_pytorch with
the AFMA computation inside the encoder and the output correction inside every decoder's
segmentation head).

The plug-in has three parts (``../shared/reference/networks.md`` section 3):

1. **Across feature map attention** (:class:`AFMAttention`). ``conv_img`` maps the *input image*
   to K class maps (7x7 conv to 64, then 3x3 conv to K, no norm, no activation); ``conv_feamap``
   maps the encoder feature at ``att_depth`` d to K maps (1x1 conv) and divides them by
   ``(2**d) ** spatial_dims``. Both are cut into non-overlapping ``p x p`` patches (``p**3`` in
   3D; the remainder that does not fill a patch is dropped, as ``nn.Unfold`` does), every patch
   vector passes through the shared ``resolution_trans`` MLP (Linear p²->2p², Linear 2p²->p²,
   ReLU, no biases), and per class ``AFMA_k = img_patches @ feat_patches^T / p²`` of shape
   ``(N_img, N_feat)``. Output ``(B, K, N_img, N_feat)``.
2. **Output correction** (:class:`AFMAHead`): logits ``x`` = conv of the decoder output
   (kernel size per decoder, as the authors), upsampled (bilinear, align_corners=True, as
   ``nn.UpsamplingBilinear2d``); the hard one-hot of ``argmax(x)`` is average-pooled by
   ``2**d`` (the authors' all-ones depthwise conv divided by 4**d) and cut into patches; per
   class the AFMA rows, divided by their number of non-zeros (+1e-5), multiply these occupancy
   patches, the result is folded back to the image grid (zeros in the remainder) and
   ``x <- x + correction * x``.
3. **Gold AFMA loss**: :class:`svseg.losses.AFMALoss` (5 x class-weighted NLL of log-softmax
   logits + MSE to the AFMA computed from the one-hot label map).

Hosts. ``decoder`` picks the host the paper used; the encoder is a ResNet (``resnet18`` ...
``resnet152``). The 2D hosts are segmentation_models_pytorch (smp 0.6) encoders and decoders;
smp's current decoders hold the authors' parameters (same counts, checked against the
authors' code) except:

* **Unet++**: the authors' segmentation conv is 1x1, smp's is 3x3 (smp's head would add
  ``(9-1)*16*K`` parameters, +384 at K=3); svseg uses the authors' 1x1 conv (its own head).
* **PSPNet**: the authors build a depth-5 ResNet with torchvision's
  ``replace_stride_with_dilation=[False, True, True]`` (output stride 8, PSP module on the
  2048-channel layer4 output, 3x3 head conv, upsampling 8), whereas smp's ``PSPNet`` cuts the
  encoder at depth 3 (layer2, 512 channels): 5,507,712 fewer parameters with ResNet-50/K=3.
  svseg builds the authors' version: smp's ``PSPDecoder`` on a depth-5 smp ResNet dilated the
  torchvision way (the first block of a dilated stage keeps the previous dilation). The
  authors' code raises for ResNet-18/34 here (torchvision's BasicBlock refuses dilation);
  svseg dilates BasicBlocks the same way (an extension, no authors' count to compare).
* The segmentation conv of every decoder is svseg's :class:`AFMAHead` with the authors' kernel
  size and upsampling: Unet 3x3/1, Unet++ 1x1/1, FPN 1x1/4, DeepLabV3 1x1/8, LinkNet 1x1/1,
  MAnet 3x3/1, PAN 3x3/4, PSPNet 3x3/8 (equal to smp's heads except Unet++).

Checked against the authors' code: with the authors' weights copied into svseg's modules
(ResNet-50 and ResNet-34, K = 12, 320x320 input, att_depth 2 and 4), the logits and the AFMA
of all eight hosts are bit-identical to the authors' ``My_*`` models in eval and train mode
(a scratch comparison, not part of the test suite because the authors' code is not
redistributed here; ``tests/networks/test_afma.py`` re-implements the authors' per-class loops
and compares the AFMA and the correction with them). ``AFMALoss`` equals the authors'
``MyLoss_correction`` to the bit on the same inputs (K = 12, att_depth 1..3).

Special cases. DeepLabV3 and PSPNet run a dilated encoder with output stride 8, so the features
at depth 4 and 5 are at 1/8 resolution: as the authors (their segmentation heads and main.py's
loss), the head and the loss then pool by 2**3 (``pool_depth = min(att_depth, 3)``); the
``conv_feamap`` scaling keeps ``att_depth`` as the authors do. PAN's encoder has output stride
16; the authors have no special case there and their code fails for att_depth 5 (the pooled
occupancy and the AFMA then have different patch counts); svseg applies the same rule
(``pool_depth = min(att_depth, 4)``). :attr:`AFMA.pool_depth` holds the value; build the loss
with the same ``decoder`` and ``att_depth`` (``AFMALoss`` applies the rule itself).

3D. ``spatial_dims=3`` is supported with ``decoder="unet"`` only: the host is MONAI's
``FlexibleUNet`` encoder (MONAI 3D ResNet ``resnet10`` ... ``resnet200``) and U-Net decoder, with
3D patches ``p x p x p`` (``resolution_trans`` is then p³->2p³->p³: choose a small patch size,
e.g. 4), scaling ``(2**d)**3`` and trilinear upsampling. The smp hosts (every other decoder)
are 2D-only and raise ``ValueError`` for ``spatial_dims=3``.

Deviations from the authors' code (all documented in the class docstring):

* K attention channels instead of the authors' fixed 12 (their ``classes_num=12`` default:
  their loss cannot broadcast otherwise). Counts equal the authors' at K=12 and differ by the
  K-dependent layers (conv_img's last conv, conv_feamap) otherwise.
* Logits out (no activation): the authors apply ``logsoftmax2d`` inside the model; in svseg
  :class:`svseg.losses.AFMALoss` applies ``log_softmax``.
* Train mode returns ``(logits, afma)``, eval mode only the corrected logits (the authors return
  the tuple in both modes).
* ``in_channels`` feeds the encoder stem *and* ``conv_img`` (the authors' ``conv_img`` always
  takes 3 channels).
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from svseg.networks.blocks import check_positive_int, check_pretrained, extract_patches, fold_patches, interp_mode

__all__ = ["AFMA", "AFMAttention", "AFMAHead", "afma_pool_depth", "DECODERS", "extract_patches", "fold_patches"]

#: decoder name -> (head conv kernel size, head upsampling factor, encoder output stride)
_HOSTS: dict[str, tuple[int, int, int]] = {
    "unet": (3, 1, 32),
    "unetplusplus": (1, 1, 32),
    "fpn": (1, 4, 32),
    "deeplabv3": (1, 8, 8),
    "linknet": (1, 1, 32),
    "manet": (3, 1, 32),
    "pan": (3, 4, 16),
    "pspnet": (3, 8, 8),
}
DECODERS: tuple[str, ...] = tuple(_HOSTS)
#: 2D decoder name -> (segmentation_models_pytorch model, its extra keywords, decoder output channels)
_SMP_MODELS: dict[str, tuple[str, dict, int]] = {
    "unet": ("Unet", {}, 16),
    "unetplusplus": ("UnetPlusPlus", {}, 16),
    "fpn": ("FPN", {}, 128),
    "deeplabv3": ("DeepLabV3", {"encoder_output_stride": 8}, 256),
    "linknet": ("Linknet", {}, 32),
    "manet": ("MAnet", {}, 16),
    "pan": ("PAN", {"encoder_output_stride": 16}, 32),
    "pspnet": ("PSPNet", {"encoder_depth": 5}, 512),
}
_RESNETS_2D = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_RESNETS_3D = ("resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200")


def afma_pool_depth(decoder: str, att_depth: int) -> int:
    """Depth (log2 of the pooling factor) the output correction and the gold AFMA use.

    ``att_depth`` capped at the encoder's output stride: 3 for DeepLabV3/PSPNet (the authors'
    special case), 4 for PAN (svseg's, same rule), ``att_depth`` otherwise.
    """
    if decoder not in _HOSTS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}.")
    return min(int(att_depth), int(math.log2(_HOSTS[decoder][2])))


def _conv(spatial_dims: int, *args, **kwargs) -> nn.Module:
    return (nn.Conv2d if spatial_dims == 2 else nn.Conv3d)(*args, **kwargs)


class AFMAttention(nn.Module):
    """Across feature map attention (the part the authors put in the encoder).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the raw input image (feeds ``conv_img``).
        feature_channels: channels of the encoder feature at ``att_depth``.
        num_classes: K, the number of attention maps.
        att_depth: depth d of the encoder feature (its resolution is ``1/2**d`` of the input
            for non-dilated encoders); the feature map is divided by ``(2**d)**spatial_dims``.
        patch_size: p.

    Forward: ``(image (B, in_channels, *S), feature (B, C_d, *S_d))`` ->
    ``(B, K, N_img, N_feat)`` with ``N_img = prod(S // p)``, ``N_feat = prod(S_d // p)``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, feature_channels: int, num_classes: int, att_depth: int, patch_size: int
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.patch_size = patch_size
        self.scale = float((2**att_depth) ** spatial_dims)
        p_vol = patch_size**spatial_dims
        self.conv_img = nn.Sequential(
            _conv(spatial_dims, in_channels, 64, kernel_size=7, padding=3),
            _conv(spatial_dims, 64, num_classes, kernel_size=3, padding=1),
        )
        self.conv_feamap = _conv(spatial_dims, feature_channels, num_classes, kernel_size=1)
        self.resolution_trans = nn.Sequential(
            nn.Linear(p_vol, 2 * p_vol, bias=False), nn.Linear(2 * p_vol, p_vol, bias=False), nn.ReLU()
        )

    def forward(self, image: torch.Tensor, feature: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        img = self.resolution_trans(extract_patches(self.conv_img(image), p))  # (B, K, N_img, P)
        fea = self.conv_feamap(feature) / self.scale
        fea = self.resolution_trans(extract_patches(fea, p))  # (B, K, N_feat, P)
        return torch.matmul(img, fea.transpose(-1, -2)) / float(p**self.spatial_dims)


class AFMAHead(nn.Module):
    """Segmentation head with the AFMA output correction (the authors' ``SegmentationHead``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: decoder output channels.
        num_classes: K.
        kernel_size: conv kernel size (the authors' per-decoder choice).
        upsampling: scale factor after the conv (bilinear/trilinear, align_corners=True).
        pool_depth: the one-hot argmax map is average-pooled by ``2**pool_depth``.
        patch_size: p.

    Forward: ``(decoder_output, afma (B, K, N_img, N_feat))`` -> corrected logits ``(B, K, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        kernel_size: int,
        upsampling: int,
        pool_depth: int,
        patch_size: int,
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.conv_x = _conv(spatial_dims, in_channels, num_classes, kernel_size=kernel_size, padding=kernel_size // 2)
        self.upsampling = upsampling
        self.pool = 2**pool_depth
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor, afma: torch.Tensor) -> torch.Tensor:
        x = self.conv_x(x)
        if self.upsampling > 1:
            x = F.interpolate(x, scale_factor=float(self.upsampling), mode=interp_mode(self.spatial_dims), align_corners=True)
        with torch.no_grad():
            onehot = torch.zeros_like(x).scatter_(1, torch.argmax(x, dim=1, keepdim=True), 1.0)
            pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
            occupancy = extract_patches(pool(onehot, self.pool), self.patch_size)  # (B, K, N_feat, P)
        # the count of non-zeros per row (torch.count_nonzero, the authors' call, has no ONNX export; the same
        # integers from a comparison and a sum do)
        nonzeros = (afma != 0).sum(dim=-1, keepdim=True).to(afma.dtype) + 1e-5
        correction = torch.matmul(afma / nonzeros, occupancy)  # (B, K, N_img, P)
        correction = fold_patches(correction, self.patch_size, x.shape[2:])
        return x + correction * x


def _dilate_like_torchvision(layer: nn.Sequential, dilation: int, previous: int) -> None:
    """Replace the stride of a ResNet stage by dilation as torchvision's
    ``replace_stride_with_dilation`` does: the first block keeps ``previous`` dilation in its
    strided 3x3 conv, the other blocks' 3x3 convs get ``dilation``; strides become 1."""
    for idx, block in enumerate(layer):
        if hasattr(block, "conv3"):  # Bottleneck: the 3x3 conv is conv2
            plan = [(block.conv2, previous if idx == 0 else dilation)]
        else:  # BasicBlock (svseg extension: torchvision refuses dilation here)
            plan = [(block.conv1, previous if idx == 0 else dilation), (block.conv2, dilation)]
        for conv, rate in plan:
            conv.stride = (1, 1)
            conv.dilation = (rate, rate)
            conv.padding = (rate, rate)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


def _load_encoder_checkpoint(encoder: nn.Module, path: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained: encoder checkpoint {path!r} does not exist.")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = nn.Module.load_state_dict(encoder, state, strict=False)
    if unexpected or missing:
        raise ValueError(
            f"pretrained: {path!r} is not a ResNet checkpoint in smp/torchvision layout for this encoder "
            f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})."
        )


class AFMA(nn.Module):
    """A segmentation model with across feature map attention (Sang et al., TPAMI 2023).

    See the module docstring for the computation, the hosts and the deviations from the
    authors' code. The default configuration (Unet, ResNet-50, att_depth 2, patch 10) with
    ``out_channels=12`` has exactly the authors' 32,582,180 parameters; with K classes the count
    differs from the authors' (who always build 12 attention channels) by the K-dependent layers
    ``(12 - K) * (9 * 64 + 1) + (12 - K) * (C_d + 1)`` (``C_d`` the encoder channels at att_depth).

    Args:
        spatial_dims: 2 (all decoders) or 3 (``decoder="unet"`` on MONAI's 3D ResNet/U-Net).
        in_channels: input channels, used by the encoder stem and by ``conv_img``.
        out_channels: number of classes K (logits and attention maps). At least 2 (the
            correction uses the argmax over classes).
        decoder: ``unet``, ``unetplusplus``, ``fpn``, ``deeplabv3``, ``linknet``, ``manet``,
            ``pan`` or ``pspnet``.
        encoder_name: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` or ``resnet152``
            (3D also ``resnet10`` and ``resnet200``).
        att_depth: encoder depth 1..5 whose feature feeds the attention.
        patch_size: p (default 10). The input must be at least ``p * 2**pool_depth`` along
            every axis (one feature patch).
        pretrained: False; a local encoder checkpoint path (smp/torchvision ResNet layout for
            2D; MONAI ResNet layout for 3D); True = smp's ``"imagenet"`` weights (2D) or MONAI's
            pretrained weights (3D), downloaded, for users with internet.

    Inputs must be divisible by 32 along every axis (8 for DeepLabV3/PSPNet); PAN needs at
    least 128.

    Returns:
        train mode: ``(logits (B, K, *S), afma (B, K, N_img, N_feat))``; eval mode: logits.
        No activation (the loss applies log-softmax).

    Example::

        >>> net = AFMA(spatial_dims=2, in_channels=1, out_channels=3, encoder_name="resnet18")
        >>> net.eval()(torch.randn(1, 1, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
        >>> net3d = AFMA(3, 1, 3, encoder_name="resnet18", patch_size=4).eval()
        >>> net3d(torch.randn(1, 1, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 3,
        decoder: str = "unet",
        encoder_name: str = "resnet50",
        att_depth: int = 2,
        patch_size: int = 10,
        pretrained: bool | str = False,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}.")
        if not isinstance(out_channels, int) or out_channels < 2:
            raise ValueError(f"out_channels must be an integer >= 2 (the correction uses the argmax over classes), got {out_channels!r}.")
        if decoder not in _HOSTS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}.")
        if spatial_dims == 3 and decoder != "unet":
            raise ValueError(
                f"decoder={decoder!r} is a segmentation_models_pytorch host and 2D-only; spatial_dims=3 supports decoder='unet' "
                "(MONAI 3D ResNet + U-Net decoder)."
            )
        resnets = _RESNETS_2D if spatial_dims == 2 else _RESNETS_3D
        if encoder_name not in resnets:
            raise ValueError(f"encoder_name must be a ResNet, one of {resnets} for spatial_dims={spatial_dims}, got {encoder_name!r}.")
        if isinstance(att_depth, bool) or not isinstance(att_depth, int) or not 1 <= att_depth <= 5:
            raise ValueError(f"att_depth must be an integer in 1..5, got {att_depth!r}.")
        check_positive_int("patch_size", patch_size)
        if spatial_dims == 3 and patch_size**3 > 4096:
            raise ValueError(f"patch_size={patch_size} makes resolution_trans a {patch_size**3}->{2 * patch_size**3} MLP in 3D; use patch_size <= 16.")
        check_pretrained(pretrained)

        self.spatial_dims = spatial_dims
        self.decoder_name = decoder
        self.att_depth = att_depth
        self.patch_size = patch_size
        self.out_channels = out_channels
        kernel, upsampling, stride = _HOSTS[decoder]
        self.pool_depth = afma_pool_depth(decoder, att_depth)
        self.size_divisor = stride if decoder in ("deeplabv3", "pspnet") else 32
        # PAN's feature pyramid attention pools the 1/16 feature by 8 more
        self.min_size = 128 if decoder == "pan" else 0
        self._is_monai = spatial_dims == 3

        if spatial_dims == 2:
            self.encoder, self.decoder, dec_out = self._build_smp(decoder, encoder_name, in_channels, out_channels, pretrained)
            feature_channels = self.encoder.out_channels[att_depth]
        else:
            self.encoder, self.decoder, dec_out, channels = self._build_monai(encoder_name, in_channels, out_channels, pretrained)
            feature_channels = channels[att_depth]

        self.attention = AFMAttention(spatial_dims, in_channels, feature_channels, out_channels, att_depth, patch_size)
        self.head = AFMAHead(spatial_dims, dec_out, out_channels, kernel, upsampling, self.pool_depth, patch_size)

    # ----------------------------------------------------------------- hosts
    @staticmethod
    def _build_smp(decoder: str, encoder_name: str, in_channels: int, out_channels: int, pretrained):
        import segmentation_models_pytorch as smp

        weights = "imagenet" if pretrained is True else None
        # the encoder is built with 3 channels when a local checkpoint is loaded, then patched
        build_in = 3 if isinstance(pretrained, (str, os.PathLike)) else in_channels
        common = dict(encoder_name=encoder_name, encoder_weights=weights, in_channels=build_in, classes=out_channels)
        model_name, extra, dec_out = _SMP_MODELS[decoder]
        model = getattr(smp, model_name)(**extra, **common)
        if decoder == "pspnet":  # the authors' depth-5 encoder, dilated the torchvision way (output stride 8)
            _dilate_like_torchvision(model.encoder.layer3, dilation=2, previous=1)
            _dilate_like_torchvision(model.encoder.layer4, dilation=4, previous=2)
        encoder, dec = model.encoder, model.decoder
        if isinstance(pretrained, (str, os.PathLike)):
            _load_encoder_checkpoint(encoder, os.fspath(pretrained))
            encoder.set_in_channels(in_channels, pretrained=True)
        return encoder, dec, dec_out

    @staticmethod
    def _build_monai(encoder_name: str, in_channels: int, out_channels: int, pretrained):
        from monai.networks.nets import FlexibleUNet
        from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE

        flex = FlexibleUNet(
            in_channels=in_channels,
            out_channels=out_channels,
            backbone=encoder_name,
            pretrained=pretrained is True,
            decoder_channels=(256, 128, 64, 32, 16),
            spatial_dims=3,
            is_pad=False,
        )
        if isinstance(pretrained, (str, os.PathLike)):
            _load_encoder_checkpoint(flex.encoder, os.fspath(pretrained))
        # MONAI ResNet encoder features at depth 1..5 (strides 2..32)
        channels = [in_channels] + list(FLEXUNET_BACKBONE.register_dict[encoder_name]["feature_channel"])
        return flex.encoder, flex.decoder, 16, channels

    # --------------------------------------------------------------- forward
    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._is_monai:
            return [x] + list(self.encoder(x))
        return self.encoder(x)

    def forward(self, x: torch.Tensor):
        spatial = x.shape[2:]
        for n in spatial:
            if int(n) % self.size_divisor != 0:
                raise ValueError(f"input spatial size {tuple(int(v) for v in spatial)} must be divisible by {self.size_divisor} for decoder {self.decoder_name!r}.")
            if int(n) < self.min_size:
                raise ValueError(f"input spatial size {tuple(int(v) for v in spatial)} is too small for decoder {self.decoder_name!r}: at least {self.min_size}.")
            if int(n) // (2**self.pool_depth) < self.patch_size:
                raise ValueError(
                    f"input spatial size {tuple(int(v) for v in spatial)} is too small for patch_size={self.patch_size} at att_depth={self.att_depth}: "
                    f"every axis needs at least patch_size * 2**{self.pool_depth} = {self.patch_size * 2**self.pool_depth} voxels."
                )
        features = self._features(x)
        afma = self.attention(x, features[self.att_depth])
        if self._is_monai:
            dec = self.decoder(features[1:], 4)
        else:
            dec = self.decoder(features)
        logits = self.head(dec, afma)
        if self.training:
            return logits, afma
        return logits
