"""Tests of :mod:`svseg.training.schedulers` (synthetic optimizers, a plain ignite engine)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Engine, Events

from svseg.training import HalveLROnStall, poly_scheduler, scaled_lr, warmup_cosine_scheduler


def make_optimizer(lr):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def lr_trace(opt, sched, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_scaled_lr_follows_the_msa2net_rule():
    assert scaled_lr(0.05, 24) == 0.05
    assert scaled_lr(0.05, 20) == pytest.approx(0.05 * 20 / 24)  # bs % 5 == 0 -> scaled
    assert scaled_lr(0.05, 16) == 0.05  # 16 % 5 != 0 -> unchanged, as the authors' train.py
    with pytest.raises(ValueError, match="batch_size"):
        scaled_lr(0.05, 0)


def test_poly_scheduler_is_per_iteration_poly_09():
    opt = make_optimizer(0.05)
    lrs = lr_trace(opt, poly_scheduler(opt, max_epochs=2, epoch_length=5), 10)
    for i, lr in enumerate(lrs):
        assert lr == pytest.approx(0.05 * (1 - i / 10) ** 0.9)
    with pytest.raises(ValueError, match="positive"):
        poly_scheduler(opt, 0, 5)


def test_warmup_cosine_scheduler_shape():
    opt = make_optimizer(5e-4)
    lrs = lr_trace(opt, warmup_cosine_scheduler(opt, 10, 10, warmup_epochs=1, warmup_init_lr=5e-5, min_lr=1e-6), 100)
    assert lrs[0] == pytest.approx(5e-5) and lrs[10] == pytest.approx(5e-4)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:11]))  # warm-up rises
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # cosine falls
    assert lrs[-1] == pytest.approx(1e-6, abs=1e-6)
    with pytest.raises(ValueError, match="positive"):
        warmup_cosine_scheduler(opt, 10, 0)


def test_halve_lr_on_stall_follows_the_authors_rule():
    opt = make_optimizer(1e-3)
    validator = SimpleNamespace(state=SimpleNamespace(best_metric_epoch=10))
    trainer = Engine(lambda e, b: None)
    HalveLROnStall(opt, validator, patience=50).attach(trainer)
    halved = []

    @trainer.on(Events.EPOCH_COMPLETED)
    def record(engine):  # attached after the handler: sees this epoch's LR change
        if opt.param_groups[0]["lr"] < 1e-3 / 2 ** len(halved) - 1e-12:
            halved.append(engine.state.epoch)

    trainer.run([0], max_epochs=129)
    assert halved == [60, 120]  # epoch % (10 + 50) == 0
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)
    with pytest.raises(ValueError, match="patience"):
        HalveLROnStall(opt, validator, patience=0)


def test_halve_lr_on_stall_before_any_validation_uses_best_epoch_0():
    opt = make_optimizer(1e-3)
    trainer = Engine(lambda e, b: None)
    HalveLROnStall(opt, None, patience=3).attach(trainer)
    trainer.run([0], max_epochs=7)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)  # epochs 3 and 6
