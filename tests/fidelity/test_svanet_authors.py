"""svseg's SvANet against the authors' model (``$SVSEG_AUTHORS_DIR/SvANet``, github.com/anthonyweidai/SvANet).

The authors' model is built from their checkout at the paper configuration (``shell/main.sh``: ResNet-50,
DeepLabv3 head, ``--seg_feature_guide 2`` with the feature-guide options of that line), their weights are
moved into ``svseg.networks.SvANet`` with :func:`svseg.networks.load_authors_weights`, and the two run on
the same input. Only imports and paths are patched: their ``lib`` imports the image libraries ``cv2`` and
``imgviz`` and ``einops`` (for a ViT block the SvANet configuration never builds) at package import, which
are stubbed; their module registry walks folders relative to the working directory, so the test runs in
the checkout. Their model never downloads anything (ImageNet weights are loaded by their trainer only,
``--pretrained 0`` is their default).
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

from svseg.networks import SvANet, load_authors_weights
from tests.fidelity.authors import authors_dir, stub

pytestmark = pytest.mark.fidelity

# shell/main.sh, first line (the full paper), model options only
PAPER_ARGS = (
    "--model_name resnet50 --seg_head_name deeplabv3 --seg_feature_guide 2 --fg_start_stage 1 --fg_bottle 1 "
    "--fg_bottle_se 2 --fg_svattn 1 --fg_vit 1 --fg_vit_se 0 --fg_link 2 --fg_link_vit 1 --fg_link_vit_se 0"
).split()
SIZE = 64  # a multiple of 32; the authors' resize_shape (their output size and SvAttn pool sizes) follows it
CLASSES = 2
PAPER_PARAMETERS = 202_434_290  # docs/networks.md: svseg = the authors' used = the authors' built


def build_authors(mp, size: int = SIZE, classes: int = CLASSES):
    """The authors' SegEncoderDecoder at the paper configuration, resize_shape ``size``, on the CPU."""
    root = authors_dir("SvANet")
    mp.syspath_prepend(str(root))
    mp.chdir(root)  # their importModule lists the model folders relative to the working directory
    stub(mp, "cv2")
    stub(mp, "imgviz", label_colormap=lambda n=256: np.zeros((n, 3), np.uint8))
    stub(mp, "einops", rearrange=None)
    opt = importlib.import_module("opts").Opts().parse(PAPER_ARGS)
    # what their paramsInit derives from the dataset: image size, classes, device
    opt.resize_shape = size
    opt.seg_num_classes = opt.cls_num_classes = opt.num_classes = classes
    opt.device = torch.device("cpu")
    torch.manual_seed(0)
    np.random.seed(0)
    return importlib.import_module("lib.model").getModel(opt)


def build_pair(mp, size: int = SIZE, classes: int = CLASSES):
    """The authors' model and svseg's with the same weights (also used by benchmarks/versus_authors.py)."""
    theirs = build_authors(mp, size, classes)
    ours = SvANet(2, 3, classes, pretrained=False, img_size=size)
    load_authors_weights(ours, theirs.state_dict())
    return ours, theirs


def tolerance(reference: torch.Tensor) -> dict:
    """rtol 1e-5; atol 1e-5 of the output's scale, for elements near zero where a relative bound means nothing
    (randomly initialised logits are O(1e-2), so a fixed atol would hide real differences)."""
    return {"rtol": 1e-5, "atol": 1e-5 * float(reference.abs().max())}


def switch_off_randomness(net: nn.Module) -> None:
    """In train mode, turn off what draws random numbers, on either side alike, without touching BatchNorm:
    Monte-Carlo attention (eval = global average pool; it holds no norm layer), SvAttn's random masks
    (only the CSLayer's own flag: its BasicBlocks' BatchNorm stays in train mode), stochastic depth and
    dropout. The authors draw from numpy and python ``random``, svseg from torch, so draws cannot agree."""
    for module in net.modules():
        name = type(module).__name__
        if name in ("MoCAttention", "StochasticDepth") or isinstance(module, (nn.Dropout, nn.Dropout2d, nn.Dropout3d)):
            module.eval()
        elif name == "CSLayer":
            module.training = False


def test_eval_outputs_equal(isolated_imports):
    ours, theirs = build_pair(isolated_imports)
    ours.eval()
    theirs.eval()
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    assert got.shape == expected.shape == (1, CLASSES, SIZE, SIZE)
    torch.testing.assert_close(got, expected, **tolerance(expected))


def test_train_outputs_and_batchnorm_updates_equal(isolated_imports):
    ours, theirs = build_pair(isolated_imports)
    for net in (ours, theirs):
        net.train()
        switch_off_randomness(net)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))  # batch > 1: BN after ASPP's pool
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    # the authors' train mode returns one logit map, like svseg's
    assert isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, expected, **tolerance(expected))
    # the running statistics every train-mode BatchNorm updated agree as well
    moved = load_authors_weights(SvANet(2, 3, CLASSES, img_size=SIZE), theirs.state_dict()).state_dict()
    for name, value in ours.state_dict().items():
        if name.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(value, moved[name], rtol=1e-5, atol=1e-6, msg=name)


def test_used_parameter_counts_equal(isolated_imports):
    ours, theirs = build_pair(isolated_imports)
    theirs.train()
    theirs(torch.randn(2, 3, SIZE, SIZE)).sum().backward()
    used = sum(p.numel() for p in theirs.parameters() if p.grad is not None)
    assert used == sum(p.numel() for p in ours.parameters()) == PAPER_PARAMETERS


def test_loader_refuses_another_networks_state_dict():
    """No checkout needed: another network's names fail the strict load, and the error lists them."""
    net = SvANet(2, 3, CLASSES, base_width=8)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_authors_weights(net, {"backbone.stem.conv1.weight": torch.zeros(1)})
