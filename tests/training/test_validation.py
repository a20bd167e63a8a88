"""Tests of :mod:`svseg.training.validation`: a plain ignite trainer and a real MONAI evaluator
whose key metric follows a scripted score per epoch (synthetic, no data)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.metrics import Metric
from monai.engines import Evaluator
from monai.handlers import ValidationHandler

from svseg.training import PeriodicValidation


class ScriptedScore(Metric):
    """A key metric whose value is ``score(epoch)``: the evaluator's output is its epoch."""

    def __init__(self, score):
        self.score = score
        self.epoch = 0
        super().__init__()

    def reset(self):
        self.epoch = 0

    def update(self, output):
        self.epoch = int(output)

    def compute(self):
        return float(self.score(self.epoch))


def make_validator(score):
    """A MONAI evaluator that records the trainer epochs it ran at in ``validator.ran``."""
    validator = Evaluator(device=torch.device("cpu"), val_data_loader=[0], epoch_length=1,
                          iteration_update=lambda engine, batch: engine.state.epoch,
                          key_val_metric={"score": ScriptedScore(score)}, decollate=False)
    validator.ran = []
    validator.add_event_handler(Events.COMPLETED, lambda e: validator.ran.append(e.state.epoch))
    return validator


def train(handler, max_epochs):
    trainer = Engine(lambda e, b: None)
    handler.attach(trainer)
    trainer.run([0], max_epochs=max_epochs)
    return trainer


def test_periodic_validation_interval_start_and_last_epoch():
    v = make_validator(lambda e: e)
    train(PeriodicValidation(v, interval=20, start_epoch=350), 700)
    assert v.ran[0] == 360 and v.ran[-1] == 700 and len(v.ran) == 18
    assert v.state.best_metric_epoch == 700
    v2 = make_validator(lambda e: e)
    train(PeriodicValidation(v2, interval=20, start_epoch=0), 7)
    assert v2.ran == [7], "the last epoch always validates (so model.pt exists)"


def test_periodic_validation_early_stop():
    v = make_validator(lambda e: min(e, 3))  # no improvement after epoch 3
    trainer = train(PeriodicValidation(v, interval=1, early_stop_patience=5), 100)
    assert trainer.state.epoch == 8 and v.state.best_metric_epoch == 3
    with pytest.raises(ValueError, match="interval"):
        PeriodicValidation(v, interval=0)
    with pytest.raises(ValueError, match="early_stop_patience"):
        PeriodicValidation(v, early_stop_patience=0)


def test_periodic_validation_is_monai_validation_handler():
    v = make_validator(lambda e: e)
    handler = PeriodicValidation(None, interval=2)
    assert isinstance(handler, ValidationHandler)
    with pytest.raises(TypeError, match="Evaluator"):
        PeriodicValidation(object())
    handler.set_validator(v)
    train(handler, 5)
    assert v.ran == [2, 4, 5]
    with pytest.raises(RuntimeError, match="set_validator"):
        train(PeriodicValidation(None), 1)
