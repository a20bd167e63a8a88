"""svseg's MSA2Net against the authors' model (``$SVSEG_AUTHORS_DIR/MSA-2Net``, github.com/xmindflow/MSA-2Net).

The authors' ``Msa2Net(num_classes=9)`` (their training default: Synapse, 224x224, ``token_mlp_mode="mix_skip"``)
is built from their checkout, its weights are moved into ``svseg.networks.MSA2Net(2, 1, 9)`` (the released
variant) with :func:`svseg.networks.load_authors_weights`, and both run on the same grey 224x224 input.
Only imports are patched: ``fvcore`` (imported for a FLOP counter their model never calls) is stubbed; their
copy of timm declares dataclass fields with dataclass-instance defaults, which Python >= 3.11 rejects, so
while their files are imported those classes are made hashable (``unsafe_hash``, the behaviour their Python
3.8 had); and their backbone wrapper ``MaxViT4Out_Small`` loads ImageNet weights from
``./pretrained_pth`` by default, so its ``pretrain`` default is set to False (nothing is downloaded or read).
Their code needs ``einops``; the tests skip when it is not installed.
"""
from __future__ import annotations

import dataclasses
import importlib

import pytest
import torch
from torch import nn

from svseg.networks import MSA2Net, load_authors_weights
from tests.fidelity.authors import authors_dir, stub

pytestmark = pytest.mark.fidelity

SIZE = 224  # their backbone is built for 224 only (MaxViT4Out_Small(img_size=224))
CLASSES = 9
USED_PARAMETERS = 71_013_299  # docs/networks.md: used by the authors' forward = svseg's default build
BUILT_PARAMETERS = 93_660_877  # everything the authors' released model builds


def build_authors(mp):
    """The authors' Msa2Net(num_classes=9), random initialisation, on the CPU."""
    root = authors_dir("MSA-2Net")
    pytest.importorskip("einops", reason="the authors' MSA-2Net code imports einops: pip install einops")
    mp.syspath_prepend(str(root))  # their files import each other as ``networks.*``
    stub(mp, "fvcore")
    stub(mp, "fvcore.nn", FlopCountAnalysis=None)
    original = dataclasses.dataclass

    def hashable_dataclass(cls=None, /, **kwargs):
        def wrap(c):
            if c.__module__.startswith("networks.") and "__hash__" not in c.__dict__:
                kwargs.setdefault("unsafe_hash", True)
            return original(c, **kwargs)
        return wrap if cls is None else wrap(cls)

    mp.setattr(dataclasses, "dataclass", hashable_dataclass)
    wrapper = importlib.import_module("networks.merit_lib.networks").MaxViT4Out_Small
    mp.setattr(wrapper.__init__, "__defaults__", (1, SIZE, False))  # (n_class, img_size, pretrain)
    model_class = importlib.import_module("networks.msa2net").Msa2Net
    mp.setattr(dataclasses, "dataclass", original)
    torch.manual_seed(0)
    return model_class(num_classes=CLASSES)


def build_pair(mp):
    theirs = build_authors(mp)
    ours = MSA2Net(2, 1, CLASSES, img_size=SIZE, pretrained=False)
    load_authors_weights(ours, theirs.state_dict())
    return ours, theirs


def tolerance(reference: torch.Tensor) -> dict:
    """rtol 1e-5; atol 1e-5 of the logits' scale (O(5) here) for elements near zero. svseg's backbone is timm's
    MaxViT, which uses fused scaled-dot-product attention where the authors' copy computes softmax(QK^T)V
    explicitly: the same math, rounded differently (measured ~8e-6 absolute on logits of scale ~6)."""
    return {"rtol": 1e-5, "atol": 1e-5 * float(reference.abs().max())}


def switch_off_randomness(net: nn.Module) -> None:
    """Dropout (timm's relative-position MLPs carry p=0.125 on both sides) and drop-path modules to eval;
    BatchNorm and LayerNorm stay in train mode."""
    for module in net.modules():
        if isinstance(module, (nn.Dropout, nn.Dropout2d)) or "DropPath" in type(module).__name__:
            module.eval()


def test_eval_outputs_equal(isolated_imports):
    ours, theirs = build_pair(isolated_imports)
    ours.eval()
    theirs.eval()
    x = torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    assert got.shape == expected.shape == (1, CLASSES, SIZE, SIZE)
    torch.testing.assert_close(got, expected, **tolerance(expected))


def test_train_outputs_equal(isolated_imports):
    ours, theirs = build_pair(isolated_imports)
    for net in (ours, theirs):
        net.train()
        switch_off_randomness(net)
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = theirs(x)
        got = ours(x)
    # both return one logit map in train mode (no deep supervision)
    assert isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)
    torch.testing.assert_close(got, expected, **tolerance(expected))


def test_used_parameter_counts_equal(isolated_imports):
    ours, theirs = build_pair(isolated_imports)
    assert sum(p.numel() for p in theirs.parameters()) == BUILT_PARAMETERS
    theirs.train()
    theirs(torch.randn(2, 1, SIZE, SIZE)).sum().backward()
    used = sum(p.numel() for p in theirs.parameters() if p.grad is not None)
    assert used == sum(p.numel() for p in ours.parameters()) == USED_PARAMETERS
