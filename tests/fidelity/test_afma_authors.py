"""svseg's AFMA against the authors' ``My_unet`` (``$SVSEG_AUTHORS_DIR/AFMA/models/unet/unet_model.py``).

The paper's default host (U-Net, ResNet-50 encoder, att_depth 2, patch 10) is built from the authors'
checkout with ``encoder_weights=None`` (nothing is downloaded; ``torch.hub.load_state_dict_from_url`` is made
to raise for the test's duration) and ``activation=None``: their ``main.py`` passes ``"logsoftmax2d"``, which
svseg moves into :class:`svseg.losses.AFMALoss`, so the logits are compared before it. The authors' encoder
imports ``pretrainedmodels`` for its download table only; it is stubbed with empty settings. Their weights go
into ``AFMA(2, 3, 12, "unet", "resnet50", att_depth=2)`` with :func:`svseg.networks.load_authors_weights`.

12 classes: the authors always build 12 attention channels (``get_encoder(classes_num=12)``), svseg builds
K = ``out_channels``. Only at K = 12 are both the same model, so the outputs are compared there; for the
default K = 3 the test checks that the counts differ by exactly the K-dependent layers.

Input: batch 2, 96x96, so that both the image (9x9 patches of 10, remainder 6) and the 1/4 feature (2x2
patches, remainder 4) have several patches and a remainder. Randomness: the U-Net host has no dropout, so
train mode is deterministic on both sides as it is.
"""
from __future__ import annotations

import importlib

import pytest
import torch

from svseg.networks import AFMA, load_authors_weights
from svseg.networks.weight_maps import afma as afma_map
from tests.fidelity.authors import (authors_dir, output_atol, randomize_constant_state, stub, use_checkout,
                                    used_parameters)

pytestmark = pytest.mark.fidelity

ATT_DEPTH = 2


def import_authors(mp):
    """The authors' ``models.unet.unet_model`` module (``My_unet``); downloads are made to fail."""
    use_checkout(mp, authors_dir("AFMA"), "models")  # Multi-Scale-Attention also has a ``models`` package
    # imported for its table of download addresses only (encoder_weights=None never reads it)
    stub(mp, "pretrainedmodels", __path__=[])
    stub(mp, "pretrainedmodels.models", __path__=[])
    stub(mp, "pretrainedmodels.models.torchvision_models",
         pretrained_settings={f"resnet{d}": {} for d in (18, 34, 50, 101, 152)})
    return importlib.import_module("models.unet.unet_model")


@pytest.fixture
def authors_unet(isolated_imports):
    return import_authors(isolated_imports)


def build_theirs(module, classes: int) -> torch.nn.Module:
    return module.My_unet(encoder_name="resnet50", encoder_weights=None, classes=classes, activation=None,
                          att_depth=ATT_DEPTH)


def test_outputs_and_used_parameters_equal_at_12_classes(authors_unet):
    torch.manual_seed(0)
    theirs = build_theirs(authors_unet, 12)
    randomize_constant_state(theirs)
    ours = AFMA(2, 3, 12, "unet", "resnet50", att_depth=ATT_DEPTH, pretrained=False)
    load_authors_weights(ours, theirs.state_dict())
    x = torch.randn(2, 3, 96, 96)

    # (a) eval mode: svseg returns the corrected logits, the authors (logits, afma) in both modes
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        want, got = theirs(x)[0], ours(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=output_atol(want))

    # (b) train mode: (logits, afma), then the BatchNorm running statistics
    theirs.train()
    ours.train()
    want = theirs(x)
    with torch.no_grad():
        got = ours(x)
    assert len(got) == len(want) == 2
    for i, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(g, w.detach(), rtol=1e-5, atol=output_atol(w), msg=lambda m, i=i: f"output {i}: {m}")
    mapped = afma_map.to_svseg(ours, theirs.state_dict())
    for name, buf in ours.named_buffers():
        torch.testing.assert_close(buf, mapped[name], rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")

    # (c) used parameters: every parameter of the authors' gets a gradient (nothing for the map to drop)
    used = used_parameters(theirs, want)
    assert set(used) == {n for n, _ in theirs.named_parameters()}
    assert sum(used.values()) == sum(p.numel() for p in ours.parameters()) == 32_582_180  # docs/networks.md


def test_counts_at_3_classes_differ_by_the_attention_channels(authors_unet):
    """The default K = 3: the authors still build 12 attention maps, svseg 3. The difference is exactly
    conv_img's last 3x3 conv (64 -> K, 9*64 + 1 per map) and conv_feamap (C_d -> K, C_d + 1 per map) for
    the 9 extra maps; C_d = 256, ResNet-50's channels at depth 2."""
    theirs = build_theirs(authors_unet, 3)
    ours = AFMA(2, 3, 3, "unet", "resnet50", att_depth=ATT_DEPTH, pretrained=False)
    n_theirs = sum(p.numel() for p in theirs.parameters())
    assert n_theirs == 32_580_875  # docs/networks.md: the authors' build, all of it used
    assert n_theirs - sum(p.numel() for p in ours.parameters()) == (12 - 3) * ((9 * 64 + 1) + (256 + 1))
