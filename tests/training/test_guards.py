"""Tests of :mod:`svseg.training.guards` on plain-ignite and MONAI trainers (synthetic data)."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler

from svseg.training import (
    LATEST_NAME,
    AtomicCheckpointSaver,
    NaNGuard,
    NonFiniteLossError,
    OOMHint,
    is_out_of_memory,
)


def test_nan_guard_stops_with_epoch_and_iteration_and_keeps_last_good_checkpoint(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer(nan_at=6)
    NaNGuard(output_dir=tmp_path).attach(engine)
    saver = AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=1)
    saver.attach(engine)
    with pytest.raises(NonFiniteLossError) as err:
        engine.run(data, max_epochs=3)
    msg = str(err.value)
    assert "epoch 2, iteration 6" in msg and "(iteration 2 of 4 in the epoch)" in msg
    assert "checkpoint_latest.pt (epoch 2, iteration 5)" in msg
    ckpt = torch.load(tmp_path / LATEST_NAME, weights_only=True)
    assert ckpt["meta"]["iteration"] == 5
    assert all(torch.isfinite(v).all() for v in ckpt["network"].values())


def test_nan_guard_reads_the_checkpoint_meta_when_another_process_wrote_it(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    AtomicCheckpointSaver(tmp_path, net, opt, sched).attach(engine)
    engine.run(data, max_epochs=1)  # an earlier run: checkpoint at epoch 1, iteration 4
    engine2, *_, data2 = toy_trainer(nan_at=1)
    NaNGuard(output_dir=tmp_path).attach(engine2)
    with pytest.raises(NonFiniteLossError, match=r"checkpoint_latest.pt \(epoch 1, iteration 4\)"):
        engine2.run(data2, max_epochs=1)
    engine3, *_, data3 = toy_trainer(nan_at=1)
    NaNGuard(output_dir=tmp_path / "empty").attach(engine3)
    with pytest.raises(NonFiniteLossError, match="no checkpoint was written before it"):
        engine3.run(data3, max_epochs=1)


def test_nan_guard_terminate_mode(toy_trainer):
    engine, *_, data = toy_trainer(nan_at=2)
    guard = NaNGuard(raise_error=False)
    guard.attach(engine)
    engine.run(data, max_epochs=2)
    assert engine.state.iteration == 2 and engine.state.svseg_nonfinite["iteration"] == 2


def test_nan_guard_in_monai_supervised_trainer(tmp_path):
    """The guard reads MONAI's decollated outputs; the run stops at the first NaN (synthetic data)."""
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
    assert torch.load(tmp_path / LATEST_NAME, weights_only=True)["meta"]["iteration"] == 2


def test_is_out_of_memory():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDNN_STATUS_ALLOC_FAILED"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(KeyError("image"))


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


def test_oom_hint_in_monai_supervised_trainer_with_stats_handler_first():
    """Synthetic OOM raised by the network: the hint reaches the caller even with MONAI's
    StatsHandler (which re-raises the original error) attached before it."""

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
