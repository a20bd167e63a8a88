"""Tests of :mod:`svseg.training.progress` on a small plain-ignite trainer (synthetic data)."""

from __future__ import annotations

import io
import json
import math
import sys

import numpy as np
import pytest
from ignite.engine import Engine, Events
from PIL import Image

import svseg.training.progress as progress_module
from svseg.training import EpochProgressBar, ProgressPlot, TensorBoardStats, plot_progress


def test_progress_plot_png_csv_json(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    engine.state.metrics = {}

    @engine.on(Events.EPOCH_COMPLETED)
    def fake_validation(e):  # a synthetic "validation Dice" rising per epoch
        e.state.metrics["val_mean_dice"] = 0.5 + 0.1 * e.state.epoch

    plot = ProgressPlot(tmp_path, optimizer=opt, figsize=(8, 6), dpi=50)
    plot.attach(engine)
    engine.run(data, max_epochs=3)
    with Image.open(tmp_path / "progress.png") as im:
        im.verify()
    with Image.open(tmp_path / "progress.png") as im:
        assert im.format == "PNG" and im.size == plot.image_size == (400, 300)
        arr = np.asarray(im.convert("RGB"))
        assert arr.std() > 5  # not a blank canvas
    hist = json.loads((tmp_path / "progress.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h["val_metric"] for h in hist] == pytest.approx([0.6, 0.7, 0.8])
    assert hist[0]["lr"] == pytest.approx(0.1) and all(h["epoch_time"] >= 0 for h in hist)
    assert all(math.isfinite(h["train_loss"]) for h in hist)
    assert (tmp_path / "progress.csv").read_text().splitlines()[0] == "epoch,iteration,train_loss,val_metric,lr,epoch_time"


def test_progress_plot_records_validation_only_when_it_ran(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    validator = Engine(lambda e, b: None)

    @validator.on(Events.COMPLETED)
    def metric(e):
        e.state.metrics = {"val_mean_dice": 0.25 * engine.state.epoch}

    engine.add_event_handler(Events.EPOCH_COMPLETED(every=2), lambda e: validator.run([0]))  # validation interval 2
    ProgressPlot(tmp_path, optimizer=opt, metric_engine=validator).attach(engine)
    engine.run(data, max_epochs=4)
    hist = json.loads((tmp_path / "progress.json").read_text())
    assert [h["val_metric"] for h in hist] == [None, 0.5, None, 1.0]


def test_progress_plot_continues_the_history_after_a_resume(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    ProgressPlot(tmp_path, optimizer=opt).attach(engine)
    engine.run(data, max_epochs=3)
    engine2, net2, opt2, sched2, data2 = toy_trainer()
    engine2.add_event_handler(Events.STARTED, lambda e: e.load_state_dict({"iteration": 4, "epoch_length": 4,
                                                                          "max_epochs": 3}))  # resumed at epoch 1
    ProgressPlot(tmp_path, optimizer=opt2).attach(engine2)
    engine2.run(data2, max_epochs=3)
    hist = json.loads((tmp_path / "progress.json").read_text())
    assert [(h["epoch"], h["iteration"]) for h in hist] == [(1, 4), (2, 8), (3, 12)]


def test_plot_progress_draws_empty_and_partial_histories():
    fig = plot_progress([])
    assert fig.texts[0].get_text().startswith("svseg training progress (0 epochs)")
    fig = plot_progress([{"epoch": 1, "train_loss": 0.5, "val_metric": None, "lr": 0.1, "epoch_time": 1.0}])
    axes = fig.axes
    assert [len(ax.lines) for ax in axes] == [1, 0, 1, 1]
    assert axes[1].texts[0].get_text() == "no data yet"


def test_non_zero_rank_progress_plot_writes_nothing(tmp_path, monkeypatch, toy_trainer):
    monkeypatch.setattr(progress_module, "is_rank0", lambda: False)  # as on DDP rank 1
    engine, net, opt, sched, data = toy_trainer()
    ProgressPlot(tmp_path, optimizer=opt).attach(engine)
    bar = EpochProgressBar(enabled=True)
    bar.attach(engine)
    engine.run(data, max_epochs=1)
    assert list(tmp_path.iterdir()) == [] and bar.bar is None


def test_progress_bar_only_when_enabled(monkeypatch, toy_trainer):
    monkeypatch.delenv("SVSEG_PROGRESS", raising=False)
    engine, *_, data = toy_trainer()
    bar = EpochProgressBar(enabled=False)
    bar.attach(engine)
    assert bar.bar is None
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a log file, not a terminal
    assert EpochProgressBar().enabled is False
    monkeypatch.setenv("SVSEG_PROGRESS", "1")
    assert EpochProgressBar().enabled is True
    bar = EpochProgressBar(enabled=True)
    bar.attach(engine)
    engine.run(data, max_epochs=1)
    assert bar.bar is not None


def test_tensorboard_stats_writes_nothing_until_attached(tmp_path, toy_trainer):
    TensorBoardStats(log_dir=str(tmp_path / "tb"))
    assert not (tmp_path / "tb").exists()
    engine, *_, data = toy_trainer()
    stats = TensorBoardStats(log_dir=str(tmp_path / "tb"), output_transform=lambda out: out["loss"])
    stats.attach(engine)
    engine.run(data, max_epochs=1)
    stats.close()
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
