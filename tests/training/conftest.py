"""Shared fixtures of the :mod:`svseg.training` tests: a small plain-ignite trainer on synthetic data."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events


def make_toy_trainer(lr: float = 0.1, nan_at: int | None = None):
    """A linear regression trainer on synthetic data (4 iterations per epoch); the loss turns NaN
    from iteration ``nan_at`` on. Returns ``(engine, net, optimizer, scheduler, data)``."""
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    xs = torch.randn(12, 3)
    ys = xs.sum(1, keepdim=True)
    data = [(xs[i : i + 3], ys[i : i + 3]) for i in range(0, 12, 3)]

    def step(engine, batch):
        x, y = batch
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(net(x), y)
        if nan_at is not None and engine.state.iteration >= nan_at:
            loss = loss * float("nan")
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    engine = Engine(step)
    engine.optimizer = opt
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: sched.step())
    return engine, net, opt, sched, data


@pytest.fixture
def toy_trainer():
    """The factory :func:`make_toy_trainer` (call it once per simulated process)."""
    return make_toy_trainer
