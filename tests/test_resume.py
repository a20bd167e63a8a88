"""SIGKILL resume test for :mod:`svseg.handlers` (issue 9).

A small MONAI ``SupervisedTrainer`` (synthetic data: random 16x16 images whose label is the
thresholded image; a random-flip augmentation; a network with dropout; SGD with momentum; a
step LR schedule; a validator with mean Dice) is run in a subprocess three times:

1. uninterrupted, 4 epochs of 5 iterations;
2. the same run, paused right after iteration 13 (epoch 3, mid-epoch; the last checkpoint was
   written at iteration 12) and killed there with SIGKILL by this test;
3. the same command again with ``resume=auto``.

The resumed run must start from the checkpoint's iteration 12 (only iteration 13 is lost and
redone), run exactly the remaining 8 iterations, end at epoch 4 / iteration 20, and, because
the data order comes from :class:`svseg.handlers.ResumableSampler` and all RNG states are
restored, end with weights bit-identical to the uninterrupted run's.

This file is also the worker script: ``python tests/test_resume.py <output_dir> ...``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EPOCHS = 4
N_TRAIN = 20
BATCH = 4  # 5 iterations per epoch
SAVE_INTERVAL = 4  # checkpoints at iterations 4, 8, 12, 16 and at every epoch end
PAUSE_AT = 13


def _worker(argv: list[str]) -> None:  # pragma: no cover - runs in a subprocess
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--pause-at", type=int, default=0)
    parser.add_argument("--resume", default="auto")
    parser.add_argument("--ddp", action="store_true", help="join a gloo process group from the RANK/WORLD_SIZE env")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from ignite.engine import Events
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator, SupervisedTrainer
    from monai.handlers import LrScheduleHandler, MeanDice, ValidationHandler, from_engine
    from monai.losses import DiceCELoss
    from monai.transforms import AsDiscreted, Compose, RandFlipd
    from monai.utils import set_determinism

    from svseg.handlers import AtomicCheckpointSaver, CheckpointResumer, NaNGuard, ProgressPlot, ResumableSampler

    rank = 0
    if args.ddp:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        rank = dist.get_rank()
    set_determinism(seed=0)
    out = Path(args.output_dir)
    rng = np.random.default_rng(0)

    def sample() -> dict:  # synthetic: label = thresholded smoothed noise
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
    def _record(engine):
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


def _run(out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return subprocess.run([sys.executable, __file__, str(out), *extra], env=env, capture_output=True, text=True, timeout=timeout)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    import torch

    ref_dir, cut_dir = tmp_path / "uninterrupted", tmp_path / "killed"
    ref = _run(ref_dir)
    assert ref.returncode == 0, ref.stderr[-3000:]
    ref_info = json.loads((ref_dir / "run.json").read_text())
    assert ref_info["resumed_from"] is None
    assert ref_info["iterations_run"] == list(range(1, EPOCHS * N_TRAIN // BATCH + 1))

    # start the same run and SIGKILL it mid-epoch, after iteration PAUSE_AT
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    proc = subprocess.Popen([sys.executable, __file__, str(cut_dir), "--pause-at", str(PAUSE_AT)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not (cut_dir / "paused0").exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "worker never reached the pause iteration"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (cut_dir / "run.json").exists()
    ckpt = torch.load(cut_dir / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    last_saved = PAUSE_AT - PAUSE_AT % SAVE_INTERVAL  # 12: mid-epoch 3
    assert ckpt["meta"]["iteration"] == last_saved and not ckpt["meta"]["epoch_completed"]
    assert last_saved % (N_TRAIN // BATCH) != 0  # really mid-epoch
    progress_before = json.loads((cut_dir / "progress.json").read_text())
    assert [h["epoch"] for h in progress_before] == [1, 2]

    res = _run(cut_dir)  # resume="auto"
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
    best = torch.load(cut_dir / "checkpoint_best.pt", map_location="cpu", weights_only=True)
    assert best["best"]["value"] == pytest.approx(max(h["val_metric"] for h in ref_progress))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ddp(out: Path, *extra: str) -> list[subprocess.Popen]:
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2")
        procs.append(subprocess.Popen([sys.executable, __file__, str(out), "--ddp", *extra], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _wait_all(procs: list[subprocess.Popen], timeout: float = 400) -> None:
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]


@pytest.mark.slow
def test_ddp_two_ranks_sigkill_and_resume(tmp_path):
    """Two gloo ranks (ResumableSampler shards the data): only rank 0 writes checkpoints and
    progress; both ranks are killed mid-epoch and resumed; the result equals the uninterrupted
    two-rank run exactly."""
    import torch

    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    _wait_all(_start_ddp(ref_dir))
    per_rank_epoch = -(-(N_TRAIN // 2) // BATCH)  # 10 samples per rank, batch 4: 3 iterations
    pause = 5  # epoch 2; last checkpoint at iteration 4 (1 iteration into epoch 2)
    procs = _start_ddp(cut_dir, "--pause-at", str(pause))
    try:
        deadline = time.time() + 300
        while not ((cut_dir / "paused0").exists() and (cut_dir / "paused1").exists()):
            for p in procs:
                assert p.poll() is None, p.communicate()[1][-3000:]
            assert time.time() < deadline, "workers never reached the pause iteration"
            time.sleep(0.1)
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    ckpt = torch.load(cut_dir / "checkpoint_latest.pt", map_location="cpu", weights_only=True)
    assert ckpt["meta"]["iteration"] == 4 and 4 % per_rank_epoch != 0
    assert not any(k.startswith("module.") for k in ckpt["network"])  # saved unwrapped
    _wait_all(_start_ddp(cut_dir))
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
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _worker(sys.argv[1:])
