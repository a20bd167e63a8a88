"""Unit tests of the bundle glue in :mod:`svseg.bundle` (fast, synthetic tensors where marked)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import svseg.bundle as sb


def test_scaled_lr_follows_the_msa2net_rule():
    assert sb.scaled_lr(0.05, 24) == 0.05
    assert sb.scaled_lr(0.05, 20) == pytest.approx(0.05 * 20 / 24)  # bs % 5 == 0 -> scaled
    assert sb.scaled_lr(0.05, 16) == 0.05  # 16 % 5 != 0 -> unchanged, as the authors' train.py
    with pytest.raises(ValueError, match="batch_size"):
        sb.scaled_lr(0.05, 0)


def _opt(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(opt, sched, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_poly_scheduler_is_per_iteration_poly_09():
    opt = _opt(0.05)
    lrs = _lrs(opt, sb.poly_scheduler(opt, max_epochs=2, epoch_length=5), 10)
    for i, lr in enumerate(lrs):
        assert lr == pytest.approx(0.05 * (1 - i / 10) ** 0.9)
    with pytest.raises(ValueError, match="positive"):
        sb.poly_scheduler(opt, 0, 5)


def test_warmup_cosine_scheduler_shape():
    opt = _opt(5e-4)
    lrs = _lrs(opt, sb.warmup_cosine_scheduler(opt, 10, 10, warmup_epochs=1, warmup_init_lr=5e-5, min_lr=1e-6), 100)
    assert lrs[0] == pytest.approx(5e-5) and lrs[10] == pytest.approx(5e-4)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # cosine falls
    assert lrs[-1] == pytest.approx(1e-6, abs=1e-6)


def test_halve_lr_on_stall_follows_the_authors_rule():
    opt = _opt(1e-3)
    validator = SimpleNamespace(state=SimpleNamespace(best_metric_epoch=10))
    h = sb.HalveLROnStall(opt, validator, patience=50)
    halved = []
    for epoch in range(1, 130):
        h(SimpleNamespace(state=SimpleNamespace(epoch=epoch)))
        if opt.param_groups[0]["lr"] < 1e-3 / 2 ** len(halved) - 1e-12:
            halved.append(epoch)
    assert halved == [60, 120]  # epoch % (10 + 50) == 0


class _Validator:
    def __init__(self, best_epochs):
        self.best_epochs = best_epochs
        self.ran = []
        self.state = SimpleNamespace(best_metric_epoch=-1)

    def run(self, epoch):
        self.ran.append(epoch)
        self.state.best_metric_epoch = self.best_epochs(epoch)


class _Engine:
    def __init__(self, max_epochs):
        self.state = SimpleNamespace(epoch=0, max_epochs=max_epochs)
        self.terminated = False

    def terminate(self):
        self.terminated = True


def test_periodic_validation_interval_start_and_last_epoch():
    v = _Validator(lambda e: e)
    h = sb.PeriodicValidation(v, interval=20, start_epoch=350)
    eng = _Engine(700)
    for e in range(1, 701):
        eng.state.epoch = e
        h(eng)
    assert v.ran[0] == 360 and v.ran[-1] == 700 and len(v.ran) == 18
    v2 = _Validator(lambda e: e)
    h2 = sb.PeriodicValidation(v2, interval=20, start_epoch=0)
    eng2 = _Engine(7)
    for e in range(1, 8):
        eng2.state.epoch = e
        h2(eng2)
    assert v2.ran == [7], "the last epoch always validates (so model.pt exists)"


def test_periodic_validation_early_stop():
    v = _Validator(lambda e: min(e, 3))  # no improvement after epoch 3
    h = sb.PeriodicValidation(v, interval=1, early_stop_patience=5)
    eng = _Engine(100)
    for e in range(1, 100):
        eng.state.epoch = e
        h(eng)
        if eng.terminated:
            break
    assert eng.state.epoch == 8
    with pytest.raises(ValueError, match="interval"):
        sb.PeriodicValidation(v, interval=0)


def test_label_cross_entropy_matches_torch():
    # synthetic logits and labels
    logits = torch.randn(2, 3, 8, 8)
    target = torch.randint(0, 3, (2, 1, 8, 8)).float()
    expected = torch.nn.functional.cross_entropy(logits, target[:, 0].long())
    assert sb.LabelCrossEntropyLoss()(logits, target) == pytest.approx(expected.item())
    assert sb.LabelCrossEntropyLoss()((logits, torch.zeros(1)), target) == pytest.approx(expected.item())


def test_effective_dataset_and_classes():
    assert sb.effective_dataset("synapse", None) == "demo"
    assert sb.effective_dataset("synapse", "/data/synapse") == "synapse"
    with pytest.raises(ValueError, match="dataset_name"):
        sb.effective_dataset("brats", None)
    assert sb.num_classes("synapse", "/data/synapse") == 9
    assert sb.num_classes("acdc", "/x") == 4 and sb.num_classes("lits", "/x") == 3
    assert sb.class_names("synapse", None)[0] == "background"
    assert sb.protocol("synapse", "/x") == "transunet" and sb.inference_mode("synapse", "/x") == "transunet"


def test_resolve_device_and_rank_zero_handlers_without_ddp():
    assert sb.resolve_device("cpu") == torch.device("cpu")
    assert sb.resolve_device("auto").type in ("cpu", "cuda")
    hs = [object(), sb.TensorBoardStats(log_dir="unused")]
    assert sb.rank_zero_handlers(hs) == hs  # a single process keeps all handlers


def test_tensorboard_stats_writes_nothing_until_attached(tmp_path):
    sb.TensorBoardStats(log_dir=str(tmp_path / "tb"))
    assert not (tmp_path / "tb").exists()
