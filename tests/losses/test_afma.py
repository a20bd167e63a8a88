"""AFMALoss (Sang et al., TPAMI 2023; svseg.losses.afma): gold AFMA, loss value, training behaviour.

All label maps and images here are synthetic (small hand-made or random arrays).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from svseg.losses import AFMALoss, afma_gold_attention
from svseg.networks import AFMA
from svseg.networks.afma import afma_pool_depth
from tests.losses.helpers import assert_decreases_on_fixed_batch


def _gold_numpy(label: np.ndarray, k: int, pool_depth: int, p: int) -> np.ndarray:
    """Gold AFMA with explicit loops: label (H, W) ints -> (K, N_img, N_feat)."""
    h, w = label.shape
    s = 2**pool_depth
    hp, wp = h // s, w // s
    out = []
    for c in range(k):
        onehot = (label == c).astype(np.float64)
        pooled = np.zeros((hp, wp))
        for i in range(hp):
            for j in range(wp):
                pooled[i, j] = onehot[i * s : (i + 1) * s, j * s : (j + 1) * s].sum() / (s * s)
        img_patches = []  # row-major over the patch grid, row-major inside a patch; remainder dropped
        for bi in range(h // p):
            for bj in range(w // p):
                img_patches.append([onehot[bi * p + a, bj * p + b] for a in range(p) for b in range(p)])
        fea_patches = []
        for bi in range(hp // p):
            for bj in range(wp // p):
                fea_patches.append([pooled[bi * p + a, bj * p + b] for a in range(p) for b in range(p)])
        att = np.zeros((len(img_patches), len(fea_patches)))
        for m, u in enumerate(img_patches):
            for n, v in enumerate(fea_patches):
                att[m, n] = sum(x * y for x, y in zip(u, v)) / (p * p)
        out.append(att)
    return np.stack(out)


def _onehot(label: np.ndarray, k: int) -> torch.Tensor:
    t = torch.as_tensor(label, dtype=torch.long)[None]
    return F.one_hot(t, k).movedim(-1, 1).float()


def test_gold_afma_all_one_class_is_exactly_one():
    # hand-computable: every pixel class 1 -> each image patch (4 ones) . each pooled patch (4 ones) / 4 = 1
    label = np.ones((8, 8), dtype=int)
    gold = afma_gold_attention(_onehot(label, 2), pool_depth=1, patch_size=2)
    assert gold.shape == (1, 2, 16, 4)
    assert torch.all(gold[0, 0] == 0) and torch.all(gold[0, 1] == 1)


def test_gold_afma_matches_numpy_loops_with_remainder():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, size=(9, 11))  # 9x11 with p = 2: a remainder row/column is dropped
    label[2:6, 4:8] = 2  # a block so pooled values reach 1
    gold = afma_gold_attention(_onehot(label, 3), pool_depth=1, patch_size=2)
    ref = _gold_numpy(label, 3, pool_depth=1, p=2)
    assert gold.shape == (1,) + ref.shape == (1, 3, 4 * 5, 2 * 2)
    np.testing.assert_allclose(gold[0].double().numpy(), ref, rtol=1e-6, atol=1e-7)


def test_gold_afma_small_hand_case():
    # 4x4 label, p = 2, pool_depth = 1: top-left 2x2 block is class 1, the rest class 0
    label = np.zeros((4, 4), dtype=int)
    label[:2, :2] = 1
    gold = afma_gold_attention(_onehot(label, 2), pool_depth=1, patch_size=2)
    # pooled class-1 map (2x2) = [[1, 0], [0, 0]] -> one feature patch [1, 0, 0, 0];
    # image patches of class 1: [1,1,1,1], [0,0,0,0] x3 -> AFMA_1 = [1/4, 0, 0, 0]^T
    torch.testing.assert_close(gold[0, 1, :, 0], torch.tensor([0.25, 0.0, 0.0, 0.0]))
    # class 0: pooled [[0, 1], [1, 1]] -> feature patch [0, 1, 1, 1]; image patches [0,0,0,0], [1,1,1,1] x3
    torch.testing.assert_close(gold[0, 0, :, 0], torch.tensor([0.0, 0.75, 0.75, 0.75]))


def test_loss_value_is_5_nll_plus_mse():
    torch.manual_seed(0)
    k = 3
    target = torch.randint(0, k, (2, 1, 8, 8))
    logits = torch.randn(2, k, 8, 8)
    loss_fn = AFMALoss(att_depth=1, patch_size=2, weight=[0.2, 1.0, 3.0])
    gold = afma_gold_attention(F.one_hot(target[:, 0], k).movedim(-1, 1).float(), 1, 2)
    afma = gold + 0.1
    got = loss_fn((logits, afma), target.float())  # float labels, as MONAI transforms give
    # by hand: weighted NLL = sum_i w[y_i] * -logp_i(y_i) / sum_i w[y_i]; MSE of a constant 0.1 offset = 0.01
    logp = torch.log_softmax(logits, 1)
    y = target[:, 0]
    w = torch.tensor([0.2, 1.0, 3.0])[y]
    nll = (w * -logp.gather(1, y[:, None])[:, 0]).sum() / w.sum()
    torch.testing.assert_close(got, 5 * nll + 0.01)


def test_loss_rejects_eval_output_and_mismatched_config():
    loss_fn = AFMALoss(att_depth=2, patch_size=2)
    target = torch.zeros(1, 1, 16, 16)
    with pytest.raises(ValueError, match="train-mode"):
        loss_fn(torch.randn(1, 2, 16, 16), target)
    with pytest.raises(ValueError, match="gold AFMA"):
        loss_fn((torch.randn(1, 2, 16, 16), torch.rand(1, 2, 64, 1)), target)
    for bad in (dict(att_depth=0), dict(patch_size=0), dict(decoder="segformer")):
        with pytest.raises(ValueError):
            AFMALoss(**bad)


@pytest.mark.parametrize("decoder,att_depth", [("deeplabv3", 4), ("pspnet", 5), ("pan", 5), ("unet", 3)])
def test_loss_pool_depth_follows_network(decoder, att_depth):
    assert AFMALoss(att_depth=att_depth, decoder=decoder).pool_depth == afma_pool_depth(decoder, att_depth)


def test_loss_decreases_on_fixed_batch():
    """Synthetic image/label pair: two classes, the foreground a bright square."""
    torch.manual_seed(0)
    net = AFMA(spatial_dims=2, in_channels=1, out_channels=2, decoder="unet", encoder_name="resnet18", att_depth=2)
    loss_fn = AFMALoss(att_depth=2, patch_size=10, decoder="unet")
    target = torch.zeros(2, 1, 64, 64)
    target[:, :, 20:44, 16:40] = 1
    image = target * 2.0 + 0.3 * torch.randn(2, 1, 64, 64)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    assert_decreases_on_fixed_batch(loss_fn, opt, lambda: net(image), target, steps=4)


def test_loss_with_deeplabv3_special_case_backward():
    """DeepLabV3 at att_depth 4: network and loss both pool by 2**3 (the authors' rule)."""
    torch.manual_seed(0)
    net = AFMA(in_channels=1, out_channels=3, decoder="deeplabv3", encoder_name="resnet18", att_depth=4, patch_size=4).train()
    target = torch.randint(0, 3, (2, 1, 64, 64))
    out = net(torch.randn(2, 1, 64, 64))
    loss = AFMALoss(att_depth=4, patch_size=4, decoder="deeplabv3")(out, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert net.attention.conv_feamap.weight.grad is not None
