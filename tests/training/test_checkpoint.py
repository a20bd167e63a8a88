"""Tests of :mod:`svseg.training.checkpoint`: in-process saver/resumer/sampler tests on a small
plain-ignite trainer (synthetic data), and the SIGKILL resume test.

SIGKILL resume: a small MONAI ``SupervisedTrainer`` (synthetic data: random 16x16 images whose
label is the thresholded image; a random-flip augmentation; a network with dropout; SGD with
momentum; a step LR schedule; a validator with mean Dice) is run in a subprocess three times:

1. uninterrupted, 4 epochs of 5 iterations;
2. the same run, paused right after iteration 13 (epoch 3, mid-epoch; the last checkpoint was
   written at iteration 12) and killed there with SIGKILL by this test;
3. the same command again with ``resume=auto``.

The resumed run must start from the checkpoint's iteration 12 (only iteration 13 is lost and
redone), run exactly the remaining 8 iterations, end at epoch 4 / iteration 20, and, because
the data order comes from :class:`svseg.training.ResumableSampler` and all RNG states are
restored, end with weights bit-identical to the uninterrupted run's.

This file is also the worker script: ``python tests/training/test_checkpoint.py <output_dir> ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointSaver

import svseg.training.checkpoint as checkpoint_module
from svseg.training import (
    BEST_NAME,
    LATEST_NAME,
    AtomicCheckpointSaver,
    CheckpointResumer,
    NaNGuard,
    NonFiniteLossError,
    ProgressPlot,
    ResumableSampler,
    collect_rng_state,
    loss_from_output,
    metric_value,
    random_state_from_dict,
    random_state_to_dict,
    restore_rng_state,
    transform_random_states,
    unwrap_network,
)

EPOCHS = 4
N_TRAIN = 20
BATCH = 4  # 5 iterations per epoch
SAVE_INTERVAL = 4  # checkpoints at iterations 4, 8, 12, 16 and at every epoch end
PAUSE_AT = 13


# ----------------------------------------------------------------------------- helpers
def test_rng_state_roundtrip():
    state = collect_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_transform_random_states_roundtrip():
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, RandFlipd, RandGaussianNoised

    flip, noise = RandFlipd(keys="image", prob=0.5), RandGaussianNoised(keys="image", prob=0.5)
    compose = Compose([flip, noise])
    loader = DataLoader(Dataset([{"image": np.zeros((1, 2, 2))}], transform=compose), num_workers=0)
    states = transform_random_states(loader)
    # depth-first, in attribute order: the Compose, then each transform and its array transform
    assert [id(s) for s in states] == [id(compose.R), id(flip.R), id(noise.R), id(noise.rand_gaussian_noise.R)]
    saved = [random_state_to_dict(rs) for rs in states]
    before = [rs.rand() for rs in states]
    for rs, d in zip(states, saved):
        random_state_from_dict(rs, d)
    assert [rs.rand() for rs in states] == before
    assert transform_random_states(DataLoader(loader.dataset, num_workers=1)) == []  # workers reseed per epoch


def test_loss_and_metric_readers():
    assert loss_from_output({"loss": torch.tensor(2.0)}) == 2.0
    assert loss_from_output([{"loss": 1.5}, {"loss": 1.5}]) == 1.5
    assert loss_from_output(torch.tensor(3.0)) == 3.0
    assert loss_from_output(None) is None and loss_from_output({"pred": 1}) is None
    assert loss_from_output(torch.ones(2)) is None and loss_from_output([]) is None
    trainer, validator = Engine(lambda e, b: None), Engine(lambda e, b: None)
    trainer.state.metrics = {"train_dice": 0.25}
    validator.state.metrics = {"val_mean_dice": torch.tensor([0.5, 1.0])}
    assert metric_value(trainer, validator, "val_mean_dice") == 0.75
    assert metric_value(trainer, validator, "train_dice") == 0.25  # falls back to the trainer
    assert metric_value(trainer, validator, "absent") is None and metric_value(trainer, None, None) is None


def test_unwrap_network():
    net = torch.nn.Linear(2, 1)
    assert unwrap_network(torch.nn.DataParallel(torch.nn.DataParallel(net))) is net
    assert unwrap_network(net) is net


# ----------------------------------------------------------------------------- saver and resumer
def test_saver_then_resumer_continues_and_finished_run_is_no_op(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=3).attach(engine)
    engine.run(data, max_epochs=2)
    ckpt = torch.load(tmp_path / LATEST_NAME, weights_only=True)
    assert ckpt["meta"] == {**ckpt["meta"], "epoch": 2, "iteration": 8, "epoch_completed": True}
    assert ckpt["lr_scheduler"]["last_epoch"] == 2

    # a fresh process-like setup resumes the finished run: nothing is trained again
    engine2, net2, opt2, sched2, data2 = toy_trainer()
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
    engine3, net3, opt3, sched3, data3 = toy_trainer()
    CheckpointResumer(tmp_path, net3, opt3, sched3, resume=True).attach(engine3)
    ran3 = []
    engine3.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran3.append(e.state.iteration))
    engine3.run(data3, max_epochs=3)
    assert ran3 == [9, 10, 11, 12] and engine3.state.epoch == 3


def test_resumer_mid_epoch_runs_only_the_rest_of_the_epoch(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    saver = AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=3)
    saver.attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=7), lambda e: e.terminate())  # "killed" after 7
    engine.run(data, max_epochs=3)
    assert saver.last_saved_iteration == 6
    engine2, net2, opt2, sched2, data2 = toy_trainer()
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
    (tmp_path / LATEST_NAME).write_bytes(b"not a checkpoint")  # e.g. written by another tool
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


def test_saver_refuses_non_finite_state_even_without_guard(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer(nan_at=3)
    saver = AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=1)
    saver.attach(engine)
    engine.run(data, max_epochs=1)  # no guard: the run goes on, but nothing non-finite is saved
    assert saver.last_saved_iteration == 2
    assert torch.load(tmp_path / LATEST_NAME, weights_only=True)["meta"]["iteration"] == 2


def test_best_checkpoint_follows_the_key_metric(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    validator = Engine(lambda e, b: None)
    scores = {1: 0.5, 2: 0.25, 3: 0.75}
    engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: setattr(
        validator.state, "metrics", {"val_mean_dice": scores[e.state.epoch]}))
    AtomicCheckpointSaver(tmp_path, net, opt, sched, key_metric="val_mean_dice", metric_engine=validator).attach(engine)
    engine.run(data, max_epochs=3)
    best = torch.load(tmp_path / BEST_NAME, weights_only=True)
    assert best["best"] == {"metric": "val_mean_dice", "value": 0.75} and best["meta"]["epoch"] == 3
    assert torch.load(tmp_path / LATEST_NAME, weights_only=True)["best"]["value"] == 0.75


def test_final_path_writes_what_monai_checkpoint_saver_writes(tmp_path, toy_trainer):
    """``final_path`` replaces MONAI's ``CheckpointSaver(save_dict={"model": net}, save_final=True)``:
    the same keys and tensors (the bare state dict, unwrapped from DataParallel/DDP)."""
    engine, net, opt, sched, data = toy_trainer()
    wrapped = torch.nn.DataParallel(net)
    ours = tmp_path / "svseg" / "model_final.pt"
    saver = AtomicCheckpointSaver(tmp_path / "svseg", wrapped, opt, sched, save_epoch=False, final_path=ours)
    saver.attach(engine)
    CheckpointSaver(save_dir=str(tmp_path / "monai"), save_dict={"model": wrapped}, save_final=True,
                    final_filename="model_final.pt").attach(engine)
    engine.run(data, max_epochs=2)
    assert sorted(p.name for p in (tmp_path / "svseg").iterdir()) == ["model_final.pt"]
    mine = torch.load(ours, weights_only=True)
    theirs = torch.load(tmp_path / "monai" / "model_final.pt", weights_only=True)
    assert list(mine) == list(theirs) == ["weight", "bias"]
    for key, value in net.state_dict().items():
        assert torch.equal(mine[key], theirs[key]) and torch.equal(mine[key], value)
    assert saver.save_final() == ours  # public: write it now


def test_final_path_after_terminate_but_not_after_an_error(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    AtomicCheckpointSaver(tmp_path / "a", net, opt, sched, final_path=tmp_path / "a" / "final.pt").attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=6), lambda e: e.terminate())
    engine.run(data, max_epochs=3)
    assert torch.equal(torch.load(tmp_path / "a" / "final.pt", weights_only=True)["weight"], net.weight)

    engine, net, opt, sched, data = toy_trainer(nan_at=2)
    NaNGuard().attach(engine)
    saver = AtomicCheckpointSaver(tmp_path / "b", net, opt, sched, final_path=tmp_path / "b" / "final.pt")
    saver.attach(engine)
    with pytest.raises(NonFiniteLossError):
        engine.run(data, max_epochs=1)
    assert not (tmp_path / "b" / "final.pt").exists()
    assert AtomicCheckpointSaver(tmp_path / "c", net).save_final() is None  # no final_path: nothing


def test_non_zero_rank_saver_writes_nothing(tmp_path, monkeypatch, toy_trainer):
    monkeypatch.setattr(checkpoint_module, "is_rank0", lambda: False)  # as on DDP rank 1
    engine, net, opt, sched, data = toy_trainer()
    AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=1, final_path=tmp_path / "model_final.pt").attach(engine)
    engine.run(data, max_epochs=1)
    assert list(tmp_path.iterdir()) == []


def test_resume_after_batch_size_change_restarts_the_interrupted_epoch(tmp_path, toy_trainer):
    engine, net, opt, sched, data = toy_trainer()
    AtomicCheckpointSaver(tmp_path, net, opt, sched, save_interval=3).attach(engine)
    engine.add_event_handler(Events.ITERATION_COMPLETED(once=7), lambda e: e.terminate())
    engine.run(data, max_epochs=3)  # 4 iterations per epoch; last checkpoint at iteration 6 (epoch 2)
    engine2, net2, opt2, sched2, data2 = toy_trainer()
    small = [(x[:2], y[:2]) for x, y in data2] + [(x[2:], y[2:]) for x, y in data2]  # "smaller batch": 8 per epoch
    CheckpointResumer(tmp_path, net2, opt2, sched2).attach(engine2)
    ran = []
    engine2.add_event_handler(Events.ITERATION_COMPLETED, lambda e: ran.append(e.state.iteration))
    engine2.run(small, max_epochs=3)
    assert ran == list(range(9, 25)) and engine2.state.epoch == 3  # epochs 2 and 3 at 8 iterations each


def test_amp_scaler_state_is_saved_and_restored(tmp_path, toy_trainer):
    class Scaler:  # stands in for MONAI's engine.scaler (torch.amp.GradScaler)
        def __init__(self, scale):
            self.scale = scale

        def state_dict(self):
            return {"scale": self.scale, "_growth_tracker": 3}

        def load_state_dict(self, d):
            self.scale = d["scale"]

    engine, net, opt, sched, data = toy_trainer()
    engine.scaler = Scaler(512.0)
    AtomicCheckpointSaver(tmp_path, net, opt, sched).attach(engine)
    engine.run(data, max_epochs=1)
    assert torch.load(tmp_path / LATEST_NAME, weights_only=True)["scaler"]["scale"] == 512.0
    engine2, net2, opt2, sched2, data2 = toy_trainer()
    engine2.scaler = Scaler(65536.0)
    CheckpointResumer(tmp_path, net2, opt2, sched2).attach(engine2)
    engine2.run(data2, max_epochs=1)
    assert engine2.scaler.scale == 512.0


# ----------------------------------------------------------------------------- SIGKILL resume
def worker_main(argv: list[str]) -> None:  # pragma: no cover - runs in a subprocess
    """One training run of the SIGKILL tests (see the module docstring)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--pause-at", type=int, default=0)
    parser.add_argument("--resume", default="auto")
    parser.add_argument("--ddp", action="store_true", help="join a gloo process group from the RANK/WORLD_SIZE env")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator, SupervisedTrainer
    from monai.handlers import LrScheduleHandler, MeanDice, ValidationHandler, from_engine
    from monai.losses import DiceCELoss
    from monai.transforms import AsDiscreted, Compose, RandFlipd
    from monai.utils import set_determinism

    rank = 0
    if args.ddp:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank = dist.get_rank()
    set_determinism(seed=0)
    out = Path(args.output_dir)
    rng = np.random.default_rng(0)

    def sample() -> dict:  # synthetic: label = thresholded noise
        img = rng.random((1, 16, 16)).astype(np.float32)
        return {"image": img, "label": (img > 0.5).astype(np.float32)}

    train_data = [sample() for _ in range(N_TRAIN)]
    val_data = [sample() for _ in range(4)]
    train_ds = Dataset(train_data, transform=Compose([RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0)]))
    train_loader = DataLoader(train_ds, batch_size=BATCH, num_workers=0, sampler=ResumableSampler(train_ds, seed=3))
    val_loader = DataLoader(Dataset(val_data), batch_size=2, num_workers=0)

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Dropout2d(0.3), torch.nn.Conv2d(8, 2, 1)
    )
    train_net = torch.nn.parallel.DistributedDataParallel(net) if args.ddp else net
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    post = Compose([AsDiscreted(keys="pred", argmax=True, to_onehot=2), AsDiscreted(keys="label", to_onehot=2)])
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=val_loader, network=net, postprocessing=post,
        key_val_metric={"val_mean_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))},
    )
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=EPOCHS, train_data_loader=train_loader, network=train_net, optimizer=opt,
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        train_handlers=[
            CheckpointResumer(output_dir=out, network=train_net, optimizer=opt, lr_scheduler=sched, resume=args.resume),
            NaNGuard(output_dir=out),
            LrScheduleHandler(lr_scheduler=sched, print_lr=False),
            ValidationHandler(validator=evaluator, interval=1, epoch_level=True),
            ProgressPlot(output_dir=out, optimizer=opt, metric_engine=evaluator),
            AtomicCheckpointSaver(output_dir=out, network=train_net, optimizer=opt, lr_scheduler=sched,
                                  save_interval=SAVE_INTERVAL, key_metric="val_mean_dice", metric_engine=evaluator),
        ],
    )
    ran: list[int] = []

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        ran.append(int(engine.state.iteration))
        if args.pause_at and engine.state.iteration == args.pause_at:
            (out / f"paused{rank}").write_text(str(engine.state.iteration))
            while True:  # wait here for the SIGKILL
                time.sleep(1)

    trainer.run()
    if rank == 0:
        torch.save({k: v.clone() for k, v in net.state_dict().items()}, out / "final_weights.pt")
    (out / ("run.json" if rank == 0 else f"run{rank}.json")).write_text(json.dumps({
        "resumed_from": getattr(trainer.state, "svseg_resumed_from", None),
        "iterations_run": ran,
        "epoch": int(trainer.state.epoch),
        "iteration": int(trainer.state.iteration),
        "lr": opt.param_groups[0]["lr"],
    }))


def worker_env(**extra: str) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", **extra)


def run_worker(out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, __file__, str(out), *extra], env=worker_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    from tests.helpers import reaped, sigkill  # not at the top: this file also runs as a plain worker script

    ref_dir, cut_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    ref = run_worker(ref_dir)
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref_info = json.loads((ref_dir / "run.json").read_text())
    assert ref_info["resumed_from"] is None
    assert ref_info["iterations_run"] == list(range(1, EPOCHS * N_TRAIN // BATCH + 1))

    # start the same run and SIGKILL it mid-epoch, after iteration PAUSE_AT
    proc = subprocess.Popen([sys.executable, __file__, str(cut_dir), "--pause-at", str(PAUSE_AT)], env=worker_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with reaped(proc):
        deadline = time.time() + 240
        while not (cut_dir / "paused0").exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "worker never reached the pause iteration"
            time.sleep(0.1)
        assert sigkill(proc, timeout=60) == -signal.SIGKILL
    assert not (cut_dir / "run.json").exists()
    ckpt = torch.load(cut_dir / LATEST_NAME, map_location="cpu", weights_only=True)
    last_saved = PAUSE_AT - PAUSE_AT % SAVE_INTERVAL  # 12: mid-epoch 3
    assert ckpt["meta"]["iteration"] == last_saved and not ckpt["meta"]["epoch_completed"]
    assert last_saved % (N_TRAIN // BATCH) != 0  # really mid-epoch
    progress_before = json.loads((cut_dir / "progress.json").read_text())
    assert [h["epoch"] for h in progress_before] == [1, 2]

    res = run_worker(cut_dir)  # resume="auto"
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((cut_dir / "run.json").read_text())
    assert info["resumed_from"]["iteration"] == last_saved
    # loses nothing beyond the checkpoint: exactly the iterations after it are run, once
    assert info["iterations_run"] == list(range(last_saved + 1, EPOCHS * N_TRAIN // BATCH + 1))
    assert info["epoch"] == ref_info["epoch"] == EPOCHS
    assert info["iteration"] == ref_info["iteration"]
    assert info["lr"] == pytest.approx(ref_info["lr"])

    w_ref = torch.load(ref_dir / "final_weights.pt", weights_only=True)
    w_res = torch.load(cut_dir / "final_weights.pt", weights_only=True)
    for k in w_ref:
        assert torch.equal(w_ref[k], w_res[k]), f"weight {k} differs after resume"

    progress = json.loads((cut_dir / "progress.json").read_text())
    ref_progress = json.loads((ref_dir / "progress.json").read_text())
    assert [h["epoch"] for h in progress] == [1, 2, 3, 4]
    assert progress[-1]["val_metric"] == pytest.approx(ref_progress[-1]["val_metric"])
    best = torch.load(cut_dir / BEST_NAME, map_location="cpu", weights_only=True)
    assert best["best"]["value"] == pytest.approx(max(h["val_metric"] for h in ref_progress))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ddp(out: Path, *extra: str) -> list[subprocess.Popen]:
    port = str(free_port())
    return [subprocess.Popen([sys.executable, __file__, str(out), "--ddp", *extra],
                             env=worker_env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank),
                                            LOCAL_RANK=str(rank), WORLD_SIZE="2"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for rank in range(2)]


def wait_all(procs: list[subprocess.Popen], timeout: float = 400) -> None:
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_ddp_two_ranks_sigkill_and_resume(tmp_path):
    """Two gloo ranks (ResumableSampler shards the data): only rank 0 writes checkpoints and
    progress; both ranks are killed mid-epoch and resumed; the result equals the uninterrupted
    two-rank run exactly."""
    from tests.helpers import reaped, sigkill  # not at the top: this file also runs as a plain worker script

    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    wait_all(start_ddp(ref_dir))
    per_rank_epoch = -(-(N_TRAIN // 2) // BATCH)  # 10 samples per rank, batch 4: 3 iterations
    pause = 5  # epoch 2; last checkpoint at iteration 4 (1 iteration into epoch 2)
    procs = start_ddp(cut_dir, "--pause-at", str(pause))
    with reaped(*procs):
        deadline = time.time() + 300
        while not ((cut_dir / "paused0").exists() and (cut_dir / "paused1").exists()):
            for p in procs:
                assert p.poll() is None, p.communicate()[1][-3000:]
            assert time.time() < deadline, "workers never reached the pause iteration"
            time.sleep(0.1)
        for p in procs:
            sigkill(p, timeout=60)
    ckpt = torch.load(cut_dir / LATEST_NAME, map_location="cpu", weights_only=True)
    assert ckpt["meta"]["iteration"] == 4 and 4 % per_rank_epoch != 0
    assert not any(k.startswith("module.") for k in ckpt["network"])  # saved unwrapped
    wait_all(start_ddp(cut_dir))
    info = json.loads((cut_dir / "run.json").read_text())
    info1 = json.loads((cut_dir / "run1.json").read_text())
    total = EPOCHS * per_rank_epoch
    assert info["resumed_from"]["iteration"] == info1["resumed_from"]["iteration"] == 4
    assert info["iterations_run"] == info1["iterations_run"] == list(range(5, total + 1))
    assert info["epoch"] == EPOCHS
    w_ref = torch.load(ref_dir / "final_weights.pt", weights_only=True)
    w_res = torch.load(cut_dir / "final_weights.pt", weights_only=True)
    for k in w_ref:
        assert torch.equal(w_ref[k], w_res[k]), f"weight {k} differs after the DDP resume"
    assert [h["epoch"] for h in json.loads((cut_dir / "progress.json").read_text())] == list(range(1, EPOCHS + 1))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    worker_main(sys.argv[1:])
