"""svseg's MSGA against the authors' ``DAF_stack`` (``$SVSEG_AUTHORS_DIR/Multi-Scale-Attention/src/models``).

The authors' model is built from their checkout as ``main.py`` builds it (``DAF_stack()``: ResNeXt-101 32x8d,
1 input channel, 5 classes, features 64); their weights are moved into ``MSGA(2, 1, 5)`` with
:func:`svseg.networks.load_authors_weights`. Nothing of theirs is patched: torchvision's
``resnext101_32x8d()`` is called without weights, and ``torch.hub.load_state_dict_from_url`` is made to
raise for the test's duration, so that nothing can be downloaded. The norms' constant initial weights, the
PReLU slopes, the PAM/CAM ``gamma`` (zero at start, which would hide the attention) and the running
statistics are randomised first.

The model (104.5 M parameters) is built once: one test runs eval mode, train mode and the parameter count,
at batch 2 and 64x64 (the smallest size with an even 1/4-resolution map for the semantic module's pools
and 2x2 features in layer4).

Randomness: the only dropout layers (``conv6_*``, ``conv7_*``) are never called and the semantic modules
are built without their optional dropout, so train mode is deterministic on both sides as it is.
"""
from __future__ import annotations

import importlib
import re

import pytest
import torch

from svseg.networks import MSGA, load_authors_weights
from svseg.networks.weight_maps import msga as msga_map
from tests.fidelity.authors import authors_dir, output_atol, randomize_constant_state, use_checkout, used_parameters

pytestmark = pytest.mark.fidelity


def import_authors(mp):
    """The authors' ``models.my_stacked_danet`` module (``DAF_stack``); downloads are made to fail."""
    use_checkout(mp, authors_dir("Multi-Scale-Attention") / "src", "models")  # AFMA also has ``models``
    return importlib.import_module("models.my_stacked_danet")


@pytest.fixture
def authors_daf(isolated_imports):
    return import_authors(isolated_imports)


def test_outputs_and_used_parameters_equal(authors_daf):
    torch.manual_seed(0)
    theirs = authors_daf.DAF_stack()
    randomize_constant_state(theirs)
    ours = MSGA(2, 1, 5, pretrained=False, init_weights=False)
    load_authors_weights(ours, theirs.state_dict())
    x = torch.randn(2, 1, 64, 64)

    # (a) eval mode: the mean of the four refined heads
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        want, got = theirs(x), ours(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=output_atol(want))

    # (b) train mode: all 32 outputs, then the BatchNorm running statistics
    theirs.train()
    ours.train()
    want = theirs(x)
    with torch.no_grad():
        got = ours(x)
    assert len(got) == len(want) == 32
    for i, (g, w) in enumerate(zip(got, want)):
        if i in range(32)[MSGA.SEMANTIC_VECTORS]:
            g = g.reshape(-1)  # svseg keeps (B, N) per sample; the authors flatten over the batch (view(-1))
        torch.testing.assert_close(g, w.detach(), rtol=1e-5, atol=output_atol(w), msg=lambda m, i=i: f"output {i}: {m}")
    mapped = msga_map.to_svseg(ours, theirs.state_dict())
    for name, buf in ours.named_buffers():
        torch.testing.assert_close(buf, mapped[name], rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")

    # (c) used parameters: those of the authors' that get a gradient; the rest is exactly what the map drops
    used = used_parameters(theirs, want)
    unused = {n for n, _ in theirs.named_parameters()} - set(used)
    assert unused == {n for n, _ in theirs.named_parameters() if any(re.match(p, n) for p in msga_map.UNUSED)}
    assert sum(used.values()) == sum(p.numel() for p in ours.parameters()) == 103_556_063  # docs/networks.md
    assert sum(p.numel() for p in theirs.parameters()) == 104_511_475
