"""In-process tests of :mod:`svseg.handlers` on small plain-ignite engines (synthetic data)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events

from svseg.handlers import (
    AtomicCheckpointSaver,
    CheckpointResumer,
    EpochProgressBar,
    ExperimentTracker,
    NaNGuard,
    NonFiniteLossError,
    OOMHint,
    ProgressPlot,
    ResumableSampler,
    collect_rng_state,
    is_rank0,
    loss_from_output,
    progress_enabled,
    restore_rng_state,
)


def _make(lr: float = 0.1, nan_at: int | None = None):
    """A linear regression trainer on synthetic data; optionally the loss turns NaN at ``nan_at``."""
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    xs = torch.randn(12, 3)
    ys = xs.sum(1, keepdim=True)
    data = [(xs[i : i + 3], ys[i : i + 3]) for i in range(0, 12, 3)]  # 4 iterations per epoch

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


def test_rng_state_roundtrip():
    import random

    state = collect_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_loss_from_output_variants():
    assert loss_from_output({"loss": torch.tensor(2.0)}) == 2.0
    assert loss_from_output([{"loss": 1.5}, {"loss": 1.5}]) == 1.5
    assert loss_from_output(torch.tensor(3.0)) == 3.0
    assert loss_from_output(None) is None and loss_from_output({"pred": 1}) is None
    assert is_rank0()


def test_saver_then_resumer_continues_and_finished_run_is_no_op(tmp_path):
    engine, net, opt, sched, data = _make()
    AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=3).attach(engine)
    engine.run(data, max_epochs=2)
    ckpt = torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)
    assert ckpt["meta"] == {**ckpt["meta"], "epoch": 2, "iteration": 8, "epoch_completed": True}
    assert ckpt["lr_scheduler"]["last_epoch"] == 2

    # a fresh process-like setup resumes the finished run: nothing is trained again
    engine2, net2, opt2, sched2, data2 = _make()
    resumer = CheckpointResumer(tmp_path, net2, opt2, sched2, resume="auto")
    resumer.attach(engine2)
    ran = []
    engine2.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    engine2.run(data2, max_epochs=2)
    assert ran == [] and engine2.state.epoch == 2 and resumer.resumed_from["iteration"] == 8
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])

    # more epochs requested: continues from epoch 2 to 3 (4 more iterations)
    engine3, net3, opt3, sched3, data3 = _make()
    CheckpointResumer(tmp_path, net3, opt3, sched3, resume=True).attach(engine3)
    ran3 = []
    engine3.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran3.append(e.state.iteration))
    engine3.run(data3, max_epochs=3)
    assert ran3 == [9, 10, 11, 12] and engine3.state.epoch == 3


def test_resumer_mid_epoch_runs_only_the_rest_of_the_epoch(tmp_path):
    engine, net, opt, sched, data = _make()
    saver = AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=3)
    saver.attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=7), lambda e: e.terminate())  # "killed" after 7
    engine.run(data, max_epochs=3)
    assert saver.last_saved_iteration == 6
    engine2, net2, opt2, sched2, data2 = _make()
    CheckpointResumer(tmp_path, net2, opt2, sched2).attach(engine2)
    ran = []
    engine2.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    engine2.run(data2, max_epochs=3)
    assert ran == list(range(7, 13)) and engine2.state.epoch == 3


def test_resumer_errors(tmp_path):
    net = torch.nn.Linear(2, 1)
    with pytest.raises(ValueError, match="resume"):
        CheckpointResumer(tmp_path, net, resume="sometimes")
    engine = Engine(lambda e, b: None)
    CheckpointResumer(tmp_path, net, resume=True).attach(engine)
    with pytest.raises(FileNotFoundError, match="checkpoint_latest.pt"):
        engine.run([0], max_epochs=1)
    engine = Engine(lambda e, b: None)
    CheckpointResumer(tmp_path, net, resume="auto").attach(engine)  # nothing there: new run
    assert engine.run([0, 1], max_epochs=1).iteration == 2
    (tmp_path / "checkpoint_latest.pt").write_bytes(b"not a checkpoint")  # e.g. written by another tool
    engine = Engine(lambda e, b: None)
    CheckpointResumer(tmp_path, net, resume="auto").attach(engine)
    with pytest.raises(RuntimeError, match="cannot read the checkpoint .*resume=False"):
        engine.run([0], max_epochs=1)


def test_resumable_sampler_order_and_skip():
    ds = list(range(10))
    s = ResumableSampler(ds, seed=1)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3)
    assert list(s) == full  # order depends only on (seed, epoch)
    s.set_epoch(4)
    assert list(s) != full
    s.set_epoch(3)
    s.skip_next(4)
    assert list(s) == full[4:]
    assert list(s) == full  # the skip is one-shot
    with pytest.raises(ValueError, match="num_samples"):
        s.skip_next(-1)


def test_nan_guard_stops_with_epoch_and_iteration_and_keeps_last_good_checkpoint(tmp_path):
    engine, net, opt, sched, data = _make(nan_at=6)
    NaNGuard(output_dir=tmp_path).attach(engine)
    saver = AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=1)
    saver.attach(engine)
    with pytest.raises(NonFiniteLossError) as err:
        engine.run(data, max_epochs=3)
    msg = str(err.value)
    assert "epoch 2, iteration 6" in msg and "(iteration 2 of 4 in the epoch)" in msg
    assert "checkpoint_latest.pt (epoch 2, iteration 5)" in msg
    ckpt = torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)
    assert ckpt["meta"]["iteration"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["network"].values())


def test_saver_refuses_non_finite_state_even_without_guard(tmp_path):
    engine, net, opt, sched, data = _make(nan_at=3)
    saver = AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=1)
    saver.attach(engine)
    engine.run(data, max_epochs=1)  # no guard: the run goes on, but nothing non-finite is saved
    assert saver.last_saved_iteration == 2
    assert torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)["meta"]["iteration"] == 2


def test_nan_guard_terminate_mode(tmp_path):
    engine, *_, data = _make(nan_at=2)
    guard = NaNGuard(raise_error=False)
    guard.attach(engine)
    engine.run(data, max_epochs=2)
    assert engine.state.iteration == 2 and engine.state.svseg_nonfinite["iteration"] == 2


def test_oom_hint_names_overrides():
    def step(engine, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    engine = Engine(step)
    OOMHint(batch_size_key="train#dataloader#batch_size", roi_key="roi_size", batch_size=8, roi_size=[224, 224]).attach(engine)
    with pytest.raises(torch.OutOfMemoryError) as err:
        engine.run([0, 1], max_epochs=1)
    msg = str(err.value)
    assert "epoch 1, iteration 1" in msg
    assert "--train#dataloader#batch_size 4" in msg and "--roi_size [160,160]" in msg

    def other(engine, batch):
        raise KeyError("image")

    engine = Engine(other)
    OOMHint().attach(engine)
    with pytest.raises(KeyError):  # other errors are re-raised unchanged
        engine.run([0], max_epochs=1)


def test_progress_plot_png_csv_json(tmp_path):
    from PIL import Image

    engine, net, opt, sched, data = _make()
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


def test_experiment_tracker_tensorboard_and_mlflow_errors(tmp_path):
    engine, net, opt, sched, data = _make()
    ExperimentTracker(tmp_path, tracking="tensorboard", optimizer=opt, log_every=1).attach(engine)
    engine.run(data, max_epochs=1)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    with pytest.raises(ValueError, match="tracking"):
        ExperimentTracker(tmp_path, tracking="wandb")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"svseg\[mlflow\]"):
            ExperimentTracker(tmp_path, tracking="mlflow")


def test_progress_bar_quiet_when_not_a_terminal(monkeypatch):
    monkeypatch.delenv("SVSEG_PROGRESS", raising=False)

    class Pipe:
        def isatty(self):
            return False

    assert progress_enabled(Pipe()) is False
    monkeypatch.setenv("SVSEG_PROGRESS", "1")
    assert progress_enabled(Pipe()) is True
    engine, *_, data = _make()
    bar = EpochProgressBar(enabled=False)
    bar.attach(engine)
    assert bar.bar is None
    bar = EpochProgressBar(enabled=True)
    bar.attach(engine)
    engine.run(data, max_epochs=1)
    assert bar.bar is not None


def test_non_zero_rank_writes_nothing(tmp_path, monkeypatch):
    import svseg.handlers as h

    monkeypatch.setattr(h, "is_rank0", lambda: False)  # as on DDP rank 1
    engine, net, opt, sched, data = _make()
    h.AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=1).attach(engine)
    h.ProgressPlot(tmp_path, optimizer=opt).attach(engine)
    engine.run(data, max_epochs=1)
    assert list(tmp_path.iterdir()) == []


def test_nan_guard_in_monai_supervised_trainer(tmp_path):
    """The guard reads MONAI's decollated outputs; the run stops at the first NaN (synthetic data)."""
    from monai.data import DataLoader
    from monai.engines import SupervisedTrainer

    net = torch.nn.Conv2d(1, 2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    data = [{"image": torch.rand(1, 8, 8), "label": (torch.rand(1, 8, 8) > 0.5).float()} for _ in range(8)]
    calls = {"n": 0}

    def loss_fn(pred, label):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(pred, label[:, 0].long())
        return loss * float("nan") if calls["n"] >= 3 else loss

    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=2, train_data_loader=DataLoader(data, batch_size=2), network=net,
        optimizer=opt, loss_function=loss_fn,
        train_handlers=[NaNGuard(output_dir=tmp_path),
                        AtomicCheckpointSaver(tmp_path, net, opt, save_interval=1)],
    )
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, iteration 3 \(iteration 3 of 4"):
        trainer.run()
    assert torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)["meta"]["iteration"] == 2


def test_progress_plot_records_validation_only_when_it_ran(tmp_path):
    engine, net, opt, sched, data = _make()
    validator = Engine(lambda e, b: None)

    @validator.on(Events.COMPLETED)
    def _metric(e):
        e.state.metrics = {"val_mean_dice": 0.25 * engine.state.epoch}

    engine.add_event_handler(Events.EPOCH_COMPLETED(every=2), lambda e: validator.run([0]))  # validation interval 2
    ProgressPlot(tmp_path, optimizer=opt, metric_engine=validator).attach(engine)
    engine.run(data, max_epochs=4)
    hist = json.loads((tmp_path / "progress.json").read_text())
    assert [h["val_metric"] for h in hist] == [None, 0.5, None, 1.0]


def test_resume_after_batch_size_change_restarts_the_interrupted_epoch(tmp_path):
    engine, net, opt, sched, data = _make()
    AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=3).attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=7), lambda e: e.terminate())
    engine.run(data, max_epochs=3)  # 4 iterations per epoch; last checkpoint at iteration 6 (epoch 2)
    engine2, net2, opt2, sched2, data2 = _make()
    small = [(x[:2], y[:2]) for x, y in data2] + [(x[2:], y[2:]) for x, y in data2]  # "smaller batch": 8 per epoch
    CheckpointResumer(tmp_path, net2, opt2, sched2).attach(engine2)
    ran = []
    engine2.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    engine2.run(small, max_epochs=3)
    assert ran == list(range(9, 25)) and engine2.state.epoch == 3  # epochs 2 and 3 at 8 iterations each


def test_oom_hint_in_monai_supervised_trainer_with_stats_handler_first():
    """Synthetic OOM raised by the network: the hint reaches the caller even with MONAI's
    StatsHandler (which re-raises the original error) attached before it."""
    from monai.data import DataLoader
    from monai.engines import SupervisedTrainer
    from monai.handlers import StatsHandler

    class Exploding(torch.nn.Conv2d):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")

    net = Exploding(1, 2, 1)
    data = [{"image": torch.rand(1, 8, 8), "label": torch.zeros(1, 8, 8)} for _ in range(4)]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=DataLoader(data, batch_size=2), network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=torch.nn.CrossEntropyLoss(),
        train_handlers=[StatsHandler(name="StatsHandler", iteration_log=False),
                        OOMHint(batch_size_key="batch_size", roi_key="roi_size", roi_size=[224, 224])],
    )
    with pytest.raises(torch.OutOfMemoryError, match=r"--batch_size 1 and/or --roi_size \[160,160\]") as err:
        trainer.run()
    assert str(err.value).count("out of memory at epoch 1, iteration 1") == 1


def test_amp_scaler_state_is_saved_and_restored(tmp_path):
    class Scaler:  # stands in for MONAI's engine.scaler (torch.amp.GradScaler)
        def __init__(self, scale):
            self.scale = scale

        def state_dict(self):
            return {"scale": self.scale, "_growth_tracker": 3}

        def load_state_dict(self, d):
            self.scale = d["scale"]

    engine, net, opt, sched, data = _make()
    engine.scaler = Scaler(512.0)
    AtomicCheckpointSaver(tmp_path, net, opt, sched).attach(engine)
    engine.run(data, max_epochs=1)
    assert torch.load(tmp_path / "checkpoint_latest.pt", weights_only=True)["scaler"]["scale"] == 512.0
    engine2, net2, opt2, sched2, data2 = _make()
    engine2.scaler = Scaler(65536.0)
    CheckpointResumer(tmp_path, net2, opt2, sched2).attach(engine2)
    engine2.run(data2, max_epochs=1)
    assert engine2.scaler.scale == 512.0
