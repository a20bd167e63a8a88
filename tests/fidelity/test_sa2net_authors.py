"""svseg's SA2Net against the authors' ``MyNet`` (``$SVSEG_AUTHORS_DIR/SA2-Net/MoNuSeg_GLaS/nets/sasanet.py``).

The authors' model is built from their checkout at the paper's MoNuSeg/GlaS configuration (3 input
channels, base width 64) with 1 class (the paper's) and with 2 (where the authors return raw logits); their
weights are moved into svseg's network with :func:`svseg.networks.load_authors_weights`. Nothing of theirs is
patched: ``sasanet.py`` imports only torch. The norms' constant initial weights and running statistics are
randomised first, so that a swapped norm would show.

Randomness: ``MyNet.forward`` has none (the only dropout sits in ``Multi_scale_Fuse``, which is never
called), so train mode is compared as is; BatchNorm in train mode normalises with the batch statistics,
deterministically, on both sides.
"""
from __future__ import annotations

import importlib
import re
import sys

import pytest
import torch

from svseg.networks import SA2Net, load_authors_weights
from svseg.networks.weight_maps import sa2net as sa2net_map
from tests.fidelity.authors import authors_dir, output_atol, randomize_constant_state, used_parameters

pytestmark = pytest.mark.fidelity

SIZE = 64  # the smallest convenient size: four 2x poolings leave a 4x4 bottom feature


def import_authors(mp):
    """The authors' ``nets.sasanet`` module (``MyNet``) from ``MoNuSeg_GLaS/`` of their checkout."""
    root = authors_dir("SA2-Net") / "MoNuSeg_GLaS"
    mp.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m == "nets" or m.startswith("nets.")]:
        mp.delitem(sys.modules, name)  # another repository's ``nets`` package
    return importlib.import_module("nets.sasanet")


@pytest.fixture
def authors_sasanet(isolated_imports):
    return import_authors(isolated_imports)


@pytest.mark.parametrize("n_classes", [1, 2])
def test_outputs_and_used_parameters_equal(authors_sasanet, n_classes):
    torch.manual_seed(0)
    theirs = authors_sasanet.MyNet(n_channels=3, base_channel=64, n_classes=n_classes)
    randomize_constant_state(theirs)
    ours = SA2Net(2, 3, n_classes)
    load_authors_weights(ours, theirs.state_dict())
    # the authors apply a sigmoid inside the model for one class; svseg returns logits
    as_theirs = torch.sigmoid if n_classes == 1 else (lambda t: t)
    x = torch.randn(2, 3, SIZE, SIZE)

    # (a) eval mode
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        want, got = theirs(x), as_theirs(ours(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=output_atol(want))

    # (b) train mode: the four deep-supervision outputs, then the BatchNorm running statistics
    theirs.train()
    ours.train()
    want = theirs(x)
    with torch.no_grad():
        got = tuple(as_theirs(t) for t in ours(x))
    assert len(got) == len(want) == 4
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w.detach(), rtol=1e-5, atol=output_atol(w), msg=lambda m, i=i: f"output {i}: {m}")
    mapped = sa2net_map.to_svseg(ours, theirs.state_dict())
    for name, buf in ours.named_buffers():
        torch.testing.assert_close(buf, mapped[name], rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")

    # (c) used parameters: those of the authors' that get a gradient; the rest is exactly what the map drops
    used = used_parameters(theirs, want)
    unused = {n for n, _ in theirs.named_parameters()} - set(used)
    assert unused == {n for n, _ in theirs.named_parameters() if any(re.match(p, n) for p in sa2net_map.UNUSED)}
    assert sum(used.values()) == sum(p.numel() for p in ours.parameters())
    assert sum(used.values()) == {1: 19_296_596, 2: 19_297_112}[n_classes]  # docs/networks.md
