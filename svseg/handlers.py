"""Reliability and monitoring handlers for svseg training workflows.

Plain ignite handlers, MONAI style (each has ``attach(engine)``; MONAI's ``SupervisedTrainer``
calls it for every entry of ``train_handlers``), all constructible from a bundle config with
``_target_``. Each class docstring shows the exact config snippet.

- :class:`AtomicCheckpointSaver`: ``checkpoint_latest.pt`` (network, optimizer, LR scheduler,
  trainer epoch/iteration, Python/NumPy/torch RNG state, random-transform state) every N
  iterations and at each epoch end, plus ``checkpoint_best.pt`` by a key metric; atomic writes;
  never saves a non-finite state.
- :class:`CheckpointResumer`: restores all of the above at ``STARTED`` (``resume=True`` or
  ``"auto"``) so that a killed run continues mid-epoch and ends after the same number of epochs.
- :class:`ResumableSampler`: a shuffling sampler whose order depends only on (seed, epoch) and
  that can skip the part of an epoch already trained; with it a resumed run is bit-identical to
  an uninterrupted one (see ``tests/test_resume.py``).
- :class:`NaNGuard`: stops at the first NaN/Inf loss, naming epoch and iteration.
- :class:`OOMHint`: turns an out-of-memory error into one that names the overrides to lower.
- :class:`ProgressPlot`: ``progress.png`` (loss, validation Dice, learning rate, epoch time per
  epoch, like nnU-Net) plus ``progress.csv`` / ``progress.json``, rewritten atomically per epoch.
- :class:`ExperimentTracker`: TensorBoard (default) or MLflow (``tracking="mlflow"``). For
  bundles, ``svseg train --tracking mlflow`` (= ``python -m monai.bundle run --tracking mlflow``)
  instead uses MONAI's own bundle tracking, which adds ``MLFlowHandler`` to ``train#trainer`` and
  ``validate#evaluator``.
- :class:`EpochProgressBar`: a tqdm bar per epoch, silent when stderr is not a terminal.

Everything that writes files does so on rank 0 only when ``torch.distributed`` is initialised.

A complete ``train_handlers`` list for a bundle (order matters at ``EPOCH_COMPLETED``: validation
first, the checkpoint saver last)::

    "train_handlers": [
      {"_target_": "svseg.handlers.CheckpointResumer", "output_dir": "@output_dir",
       "network": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler",
       "resume": "@resume"},
      {"_target_": "svseg.handlers.NaNGuard", "output_dir": "@output_dir"},
      {"_target_": "svseg.handlers.OOMHint", "batch_size_key": "batch_size", "roi_key": "roi_size",
       "batch_size": "@batch_size", "roi_size": "@roi_size"},
      {"_target_": "ValidationHandler", "validator": "@validate#evaluator", "epoch_level": true,
       "interval": 1},
      {"_target_": "svseg.handlers.ProgressPlot", "output_dir": "@output_dir",
       "optimizer": "@optimizer", "metric_engine": "@validate#evaluator"},
      {"_target_": "svseg.handlers.ExperimentTracker", "output_dir": "@output_dir",
       "tracking": "tensorboard", "optimizer": "@optimizer", "metric_engine": "@validate#evaluator"},
      {"_target_": "svseg.handlers.EpochProgressBar"},
      {"_target_": "svseg.handlers.AtomicCheckpointSaver", "output_dir": "@output_dir",
       "network": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler",
       "save_interval": 50, "key_metric": "val_mean_dice",
       "metric_engine": "@validate#evaluator"}
    ]
"""

from __future__ import annotations

import glob
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from torch.utils.data.distributed import DistributedSampler

from svseg.io import atomic_save_csv, atomic_save_figure, atomic_save_json, atomic_torch_save

__all__ = [
    "LATEST_NAME",
    "BEST_NAME",
    "is_rank0",
    "progress_enabled",
    "collect_rng_state",
    "restore_rng_state",
    "loss_from_output",
    "ResumableSampler",
    "AtomicCheckpointSaver",
    "CheckpointResumer",
    "NonFiniteLossError",
    "NaNGuard",
    "OOMHint",
    "ProgressPlot",
    "ExperimentTracker",
    "EpochProgressBar",
    "plot_progress",
]

LATEST_NAME = "checkpoint_latest.pt"
BEST_NAME = "checkpoint_best.pt"
_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- helpers
def is_rank0() -> bool:
    """True unless ``torch.distributed`` is initialised and this process is not rank 0."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def progress_enabled(stream: Any = None) -> bool:
    """Whether progress bars should be drawn.

    ``SVSEG_PROGRESS=1`` / ``0`` forces them on / off; otherwise they are drawn only when the
    stream (default ``sys.stderr``) is an interactive terminal, so log files and CI output stay
    free of carriage-return noise.
    """
    env = os.environ.get("SVSEG_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        network = network.module
    return network


def collect_rng_state() -> dict:
    """Python, NumPy and torch (CPU and initialised CUDA) global RNG states, as plain
    containers and tensors so that ``torch.load(..., weights_only=True)`` can read them back."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping) -> None:
    """Inverse of :func:`collect_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32) if torch.is_tensor(npst["keys"]) else np.asarray(npst["keys"], np.uint32)
    np.random.set_state((npst["name"], keys, npst["pos"], npst["has_gauss"], npst["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = list(state["cuda"])
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def _random_states(obj: Any, found: list, seen: set) -> None:
    """Collect the ``numpy.random.RandomState`` objects of MONAI randomisable transforms
    (attribute ``R``) reachable from ``obj``, in a deterministic order (as ``monai.data.set_rnd``)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _random_states(item, found, seen)
        return
    if isinstance(obj, (str, bytes, int, float, torch.Tensor, np.ndarray)) or not hasattr(obj, "__dict__"):
        return
    if hasattr(obj, "set_random_state") and isinstance(getattr(obj, "R", None), np.random.RandomState):
        found.append(obj.R)
    for key, value in vars(obj).items():
        if key.startswith("__") or key == "R":
            continue
        _random_states(value, found, seen)


def _transform_states(dataloader: Any) -> list:
    dataset = getattr(dataloader, "dataset", None)
    if dataset is None or getattr(dataloader, "num_workers", 0) != 0:
        return []  # with workers, transform seeds are re-derived from the torch RNG per epoch
    found: list = []
    _random_states(dataset, found, set())
    return found


def _rs_to_dict(rs: np.random.RandomState) -> dict:
    name, keys, pos, has_gauss, gauss = rs.get_state()
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _rs_from_dict(rs: np.random.RandomState, d: Mapping) -> None:
    rs.set_state((d["name"], d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["gauss"]))


def loss_from_output(output: Any) -> float | None:
    """The scalar loss of an engine output: a MONAI dict (``"loss"`` key), a decollated list of
    such dicts, a tensor or a number. ``None`` if there is none."""
    if output is None:
        return None
    if isinstance(output, (list, tuple)):
        if not output:
            return None
        return loss_from_output(output[0])
    if isinstance(output, Mapping):
        return loss_from_output(output["loss"]) if "loss" in output else None
    if torch.is_tensor(output):
        if output.numel() != 1:
            return None
        return float(output.detach().float().item())
    if isinstance(output, (int, float, np.floating, np.integer)):
        return float(output)
    return None


def _metric_value(engine: Engine, metric_engine: Engine | None, key: str | None) -> float | None:
    if key is None:
        return None
    for eng in (metric_engine, engine):
        if eng is None:
            continue
        metrics = getattr(eng.state, "metrics", None) or {}
        if key in metrics:
            value = metrics[key]
            if torch.is_tensor(value):
                value = value.float().mean().item()
            return float(value)
    return None


def _current_lr(optimizer: torch.optim.Optimizer | None, engine: Engine) -> float | None:
    optimizer = optimizer if optimizer is not None else getattr(engine, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "param_groups", None):
        return None
    return float(optimizer.param_groups[0]["lr"])


def _scaler_state(engine: Engine) -> dict | None:
    """State of the AMP ``GradScaler`` of a MONAI trainer (``engine.scaler``), if any."""
    scaler = getattr(engine, "scaler", None)
    if scaler is None or not hasattr(scaler, "state_dict"):
        return None
    state = scaler.state_dict()
    return dict(state) if state else None


def _remove_stale_temps(directory: Path, name: str) -> None:
    """Delete temporary files a killed writer may have left (``.<name>.*.tmp``)."""
    for tmp in glob.glob(str(directory / f".{name}.*.tmp*")):
        try:
            os.unlink(tmp)
        except OSError:
            pass


# ----------------------------------------------------------------------------- sampler
class ResumableSampler(DistributedSampler):
    """Shuffling sampler whose order depends only on ``(seed, epoch)`` and that can skip the
    samples already trained in an interrupted epoch.

    It is a :class:`torch.utils.data.DistributedSampler` (so MONAI workflows call
    ``set_epoch(engine.state.epoch)`` at every ``EPOCH_STARTED``, and it shards under DDP), but it
    also works in a single process (``num_replicas=1``). :class:`CheckpointResumer` calls
    :meth:`skip_next` after a mid-epoch resume, so the resumed epoch sees exactly the batches the
    interrupted one had not reached yet. With PyTorch's default ``shuffle=True`` sampler the
    order of a resumed epoch is a fresh permutation instead (still the right number of
    iterations, but some samples are seen twice in that epoch and some not at all).

    Config snippet (the training data loader)::

        "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset",
                       "batch_size": 4, "num_workers": 0,
                       "sampler": {"_target_": "svseg.handlers.ResumableSampler",
                                   "dataset": "@train#dataset", "seed": 0}}

    Args:
        dataset: the dataset to sample from.
        shuffle: shuffle per epoch (with a generator seeded by ``seed + epoch``).
        seed: base seed.
        drop_last: as in ``DistributedSampler``.
        num_replicas: number of processes; default the DDP world size, or 1 without DDP.
        rank: this process's rank; default the DDP rank, or 0.
    """

    def __init__(self, dataset: Any, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self._skip = 0

    def skip_next(self, num_samples: int) -> None:
        """Skip the first ``num_samples`` indices of the next iteration over this sampler only."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        self._skip = int(num_samples)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])


# ----------------------------------------------------------------------------- checkpoints
class AtomicCheckpointSaver:
    """Save the whole training state atomically: ``<output_dir>/checkpoint_latest.pt`` every
    ``save_interval`` iterations and at every epoch end, and ``checkpoint_best.pt`` whenever the
    key metric improves.

    The checkpoint is a dict with ``network`` (unwrapped from DDP), ``optimizer``,
    ``lr_scheduler``, ``scaler`` (MONAI's AMP ``GradScaler``, when ``amp=True``), ``trainer`` (ignite ``engine.state_dict()``: iteration, epoch_length,
    max_epochs), ``rng`` (Python/NumPy/torch, see :func:`collect_rng_state`),
    ``transform_rng`` (the random states of MONAI random transforms when the loader has no
    workers), ``best`` (best metric so far) and ``meta`` (epoch, iteration, whether the epoch's
    handlers had completed, time, format version). It is written to a temporary file in
    ``output_dir`` and renamed (:func:`svseg.io.atomic_torch_save`), so a kill during a save
    leaves the previous complete file. A state whose loss or weights are not finite is never
    saved, so the latest checkpoint is always the last good one. Saves happen on rank 0 only.

    The iteration save skips the last iteration of an epoch: the ``EPOCH_COMPLETED`` save
    (after validation, if this handler is attached after the ``ValidationHandler``) covers it.

    Config snippet (put it last in ``train_handlers``)::

        {"_target_": "svseg.handlers.AtomicCheckpointSaver", "output_dir": "@output_dir",
         "network": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler",
         "save_interval": 50, "key_metric": "val_mean_dice", "metric_engine": "@validate#evaluator"}

    Args:
        output_dir: folder of the checkpoints.
        network: the trained network.
        optimizer: its optimizer (optional).
        lr_scheduler: its LR scheduler (optional).
        save_interval: save every this many iterations (0: only at epoch ends).
        save_epoch: also save at every epoch end.
        key_metric: metric name for ``checkpoint_best.pt`` (``None``: no best checkpoint).
        metric_engine: engine whose ``state.metrics`` holds ``key_metric`` (e.g. the validator);
            default the trainer.
        key_metric_mode: ``"max"`` or ``"min"``.
        latest_name: file name of the latest checkpoint.
        best_name: file name of the best checkpoint.
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module,
                 optimizer: torch.optim.Optimizer | None = None, lr_scheduler: Any = None,
                 save_interval: int = 0, save_epoch: bool = True, key_metric: str | None = None,
                 metric_engine: Engine | None = None, key_metric_mode: str = "max",
                 latest_name: str = LATEST_NAME, best_name: str = BEST_NAME) -> None:
        if save_interval < 0:
            raise ValueError(f"save_interval must be >= 0, got {save_interval}.")
        if key_metric_mode not in ("max", "min"):
            raise ValueError(f"key_metric_mode must be 'max' or 'min', got {key_metric_mode!r}.")
        if network is None:
            raise ValueError("network must be given.")
        self.output_dir = Path(output_dir)
        self.network = network
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.save_interval = int(save_interval)
        self.save_epoch = save_epoch
        self.key_metric = key_metric
        self.metric_engine = metric_engine
        self.key_metric_mode = key_metric_mode
        self.latest_path = self.output_dir / latest_name
        self.best_path = self.output_dir / best_name
        self.logger = logging.getLogger("svseg.handlers.AtomicCheckpointSaver")
        self.last_saved_iteration: int | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        if self.save_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self._iteration_completed)
        if self.save_epoch or self.key_metric:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    # --
    def _started(self, engine: Engine) -> None:
        if is_rank0():
            self.output_dir.mkdir(parents=True, exist_ok=True)
            for p in (self.latest_path, self.best_path):
                _remove_stale_temps(p.parent, p.name)
        if not hasattr(engine.state, "svseg_best_metric"):
            engine.state.svseg_best_metric = None

    def _state_is_finite(self, engine: Engine) -> bool:
        loss = loss_from_output(engine.state.output)
        if loss is not None and not math.isfinite(loss):
            return False
        with torch.no_grad():
            for p in _unwrap(self.network).parameters():
                if not bool(torch.isfinite(p).all()):
                    return False
        return True

    def checkpoint(self, engine: Engine, epoch_completed: bool) -> dict:
        """The checkpoint dict for the engine's current state."""
        dataloader = getattr(engine.state, "dataloader", None)
        ckpt = {
            "network": _unwrap(self.network).state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "scaler": _scaler_state(engine),
            "trainer": {k: v for k, v in engine.state_dict().items() if k != "epoch"},
            "rng": collect_rng_state(),
            "transform_rng": [_rs_to_dict(rs) for rs in _transform_states(dataloader)],
            "best": {"metric": self.key_metric, "value": getattr(engine.state, "svseg_best_metric", None)},
            "meta": {
                "format_version": _FORMAT_VERSION,
                "epoch": int(engine.state.epoch),
                "iteration": int(engine.state.iteration),
                "epoch_completed": bool(epoch_completed),
                "time": time.time(),
            },
        }
        return ckpt

    def save(self, engine: Engine, epoch_completed: bool) -> bool:
        """Save ``checkpoint_latest.pt`` now; returns False (and saves nothing) for a non-finite state."""
        if not self._state_is_finite(engine):
            self.logger.warning(
                f"not saving a checkpoint at epoch {engine.state.epoch}, iteration {engine.state.iteration}: "
                f"the loss or the weights are not finite; {self.latest_path} keeps the last good state."
            )
            return False
        if is_rank0():
            atomic_torch_save(self.checkpoint(engine, epoch_completed), self.latest_path)
            self.last_saved_iteration = int(engine.state.iteration)
            engine.state.svseg_last_checkpoint = {"path": str(self.latest_path), "epoch": int(engine.state.epoch),
                                                  "iteration": int(engine.state.iteration)}
        return True

    def _iteration_completed(self, engine: Engine) -> None:
        epoch_length = engine.state.epoch_length
        if epoch_length and engine.state.iteration % epoch_length == 0:
            return  # end of an epoch: saved at EPOCH_COMPLETED, after the epoch's handlers
        self.save(engine, epoch_completed=False)

    def _epoch_completed(self, engine: Engine) -> None:
        if self.key_metric:
            value = _metric_value(engine, self.metric_engine, self.key_metric)
            best = getattr(engine.state, "svseg_best_metric", None)
            if value is not None and math.isfinite(value):
                better = best is None or (value > best if self.key_metric_mode == "max" else value < best)
                if better:
                    engine.state.svseg_best_metric = value
                    if self._state_is_finite(engine) and is_rank0():
                        ckpt = self.checkpoint(engine, epoch_completed=True)
                        ckpt["best"]["value"] = value
                        atomic_torch_save(ckpt, self.best_path)
                        self.logger.info(f"new best {self.key_metric}={value:.4f} at epoch {engine.state.epoch}; "
                                         f"saved {self.best_path}")
        if self.save_epoch:
            self.save(engine, epoch_completed=True)


class CheckpointResumer:
    """Resume a killed training run from ``<output_dir>/checkpoint_latest.pt``.

    At ``STARTED`` it restores the network, optimizer, LR scheduler, AMP grad scaler, best metric
    and the trainer's
    iteration/epoch (ignite then runs only the rest of the interrupted epoch, because it counts
    the epoch's iterations from ``iteration % epoch_length``), keeping the trainer's own
    ``max_epochs`` so the resumed run ends after the same number of epochs as an uninterrupted
    one (as MONAI's ``CheckpointLoader``). The Python/NumPy/torch RNG states are restored
    right away after an epoch-end checkpoint, and after a mid-epoch checkpoint just after the
    resumed epoch's data iterator is created (before its first batch), which is where the
    uninterrupted run had them. With a :class:`ResumableSampler` the resumed epoch skips the
    batches already trained, so the resumed run reproduces the uninterrupted one exactly
    (same data order, same dropout/augmentation draws; bit-identical on CPU, and on GPU up to
    the non-determinism of cuDNN kernels). Exactness also needs ``epoch_length == len(dataloader)``
    (with a shorter ``epoch_length`` ignite carries one data iterator across epochs) and, for
    random transforms run in loader workers, a resume at an epoch end.

    Config snippet (first in ``train_handlers``; ``resume`` is ``"auto"``, ``true`` or ``false``)::

        {"_target_": "svseg.handlers.CheckpointResumer", "output_dir": "@output_dir",
         "network": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler",
         "resume": "auto"}

    Args:
        output_dir: folder holding ``checkpoint_latest.pt`` (ignored if ``checkpoint`` is given).
        network: the network to restore.
        optimizer: optimizer to restore (optional).
        lr_scheduler: LR scheduler to restore (optional).
        resume: ``"auto"`` (resume if the checkpoint exists), ``True`` (it must exist) or ``False``.
        checkpoint: explicit checkpoint path.
        map_location: ``torch.load`` map location (default CPU; tensors then move with the
            modules' ``load_state_dict``).
        strict: strict ``load_state_dict`` of the network.
    """

    def __init__(self, output_dir: str | os.PathLike | None = None, network: torch.nn.Module | None = None,
                 optimizer: torch.optim.Optimizer | None = None, lr_scheduler: Any = None,
                 resume: bool | str = "auto", checkpoint: str | os.PathLike | None = None,
                 map_location: Any = "cpu", strict: bool = True) -> None:
        if isinstance(resume, str):
            low = resume.strip().lower()
            if low in ("auto",):
                resume = "auto"
            elif low in ("true", "1", "yes"):
                resume = True
            elif low in ("false", "0", "no", "none", ""):
                resume = False
            else:
                raise ValueError(f"resume must be 'auto', True or False, got {resume!r}.")
        if network is None:
            raise ValueError("network must be given.")
        if checkpoint is None and output_dir is None and resume:
            raise ValueError("give output_dir or checkpoint to resume from.")
        self.path = Path(checkpoint) if checkpoint is not None else (Path(output_dir) / LATEST_NAME if output_dir else None)
        self.network = network
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.resume = resume
        self.map_location = map_location
        self.strict = strict
        self.logger = logging.getLogger("svseg.handlers.CheckpointResumer")
        self._pending_rng: Mapping | None = None
        self.resumed_from: dict | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._set_sampler_epoch)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._restore_pending_rng)
        engine.add_event_handler(Events.ITERATION_STARTED, self._restore_pending_rng)

    @staticmethod
    def _sampler(engine: Engine) -> Any:
        loader = getattr(engine.state, "dataloader", None)
        return getattr(loader, "sampler", None)

    def _set_sampler_epoch(self, engine: Engine) -> None:
        sampler = self._sampler(engine)
        if isinstance(sampler, ResumableSampler):
            sampler.set_epoch(engine.state.epoch)

    def _restore_pending_rng(self, engine: Engine) -> None:
        if self._pending_rng is not None:
            restore_rng_state(self._pending_rng)
            self._pending_rng = None

    def _started(self, engine: Engine) -> None:
        if not self.resume:
            return
        assert self.path is not None
        if not self.path.is_file():
            if self.resume == "auto":
                self.logger.info(f"no checkpoint at {self.path}; starting a new run.")
                return
            raise FileNotFoundError(f"resume=True but the checkpoint {self.path} does not exist.")
        try:
            ckpt = torch.load(self.path, map_location=self.map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - re-raised with the file and the way out
            raise RuntimeError(
                f"cannot read the checkpoint {self.path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "move it away or set resume=False to start a new run."
            ) from e
        if not isinstance(ckpt, Mapping) or "trainer" not in ckpt or "network" not in ckpt:
            raise ValueError(f"{self.path} is not an svseg training checkpoint (no 'trainer'/'network' entries).")
        _unwrap(self.network).load_state_dict(ckpt["network"], strict=self.strict)
        if self.optimizer is not None and ckpt.get("optimizer") is not None:
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.lr_scheduler is not None and ckpt.get("lr_scheduler") is not None:
            self.lr_scheduler.load_state_dict(ckpt["lr_scheduler"])

        scaler = getattr(engine, "scaler", None)  # MONAI's AMP GradScaler (amp=True)
        if scaler is not None and ckpt.get("scaler") and hasattr(scaler, "load_state_dict"):
            scaler.load_state_dict(ckpt["scaler"])
        prior_max_epochs = engine.state.max_epochs
        prior_epoch_length = engine.state.epoch_length
        trainer_state = dict(ckpt["trainer"])
        saved_epoch_length = trainer_state.get("epoch_length")
        length_changed = bool(prior_epoch_length and saved_epoch_length and prior_epoch_length != saved_epoch_length)
        if length_changed:
            # batch size or data changed (e.g. a smaller batch after an out-of-memory error): keep the
            # completed epochs, retrain the interrupted one from its start
            done_epochs = int(trainer_state["iteration"]) // int(saved_epoch_length)
            self.logger.warning(
                f"the epoch length changed from {saved_epoch_length} to {prior_epoch_length} iterations since "
                f"{self.path} was written; resuming at the start of epoch {done_epochs + 1} "
                f"(the {int(trainer_state['iteration']) % int(saved_epoch_length)} iterations of the interrupted "
                "epoch are trained again)."
            )
            trainer_state.pop("iteration", None)
            trainer_state.update({"epoch": done_epochs, "epoch_length": prior_epoch_length})
        engine.load_state_dict(trainer_state)
        if prior_max_epochs is not None:
            if engine.state.epoch > prior_max_epochs:
                raise ValueError(
                    f"the checkpoint {self.path} is at epoch {engine.state.epoch}, beyond max_epochs={prior_max_epochs}; "
                    "raise max_epochs to train further, or use a new output_dir."
                )
            engine.state.max_epochs = prior_max_epochs
        best = ckpt.get("best") or {}
        engine.state.svseg_best_metric = best.get("value")

        states = _transform_states(getattr(engine.state, "dataloader", None))
        saved = ckpt.get("transform_rng") or []
        if states and len(states) == len(saved):
            for rs, d in zip(states, saved):
                _rs_from_dict(rs, d)
        elif states or saved:
            self.logger.warning(f"random-transform states not restored ({len(saved)} saved, {len(states)} found).")

        iteration = int(engine.state.iteration)
        epoch_length = engine.state.epoch_length or 0
        within = iteration % epoch_length if epoch_length else 0
        loader = getattr(engine.state, "dataloader", None)
        try:
            loader_len = len(loader) if loader is not None else None
        except TypeError:
            loader_len = None
        if loader_len is not None and epoch_length and loader_len != epoch_length:
            self.logger.warning(
                f"epoch_length ({epoch_length}) differs from the data loader length ({loader_len}): ignite then "
                "carries one data iterator across epochs, so the resumed run trains the right number of iterations "
                "but with a different data order than an uninterrupted run."
            )
        if within and not length_changed:
            # mid-epoch: skip the trained batches, restore the RNGs after the data iterator exists
            sampler = self._sampler(engine)
            batch_size = getattr(loader, "batch_size", None)
            if isinstance(sampler, ResumableSampler) and batch_size and loader_len == epoch_length:
                sampler.skip_next(within * int(batch_size))
            else:
                self.logger.warning(
                    "resuming mid-epoch without skipping the trained batches (that needs "
                    "svseg.handlers.ResumableSampler as the loader's sampler and epoch_length == len(dataloader)): "
                    f"the rest of epoch {engine.state.epoch + 1} ({epoch_length - within} iterations) uses a new data order."
                )
            self._pending_rng = ckpt["rng"]
        else:
            restore_rng_state(ckpt["rng"])
        self.resumed_from = {"path": str(self.path), "epoch": int(engine.state.epoch), "iteration": iteration}
        engine.state.svseg_resumed_from = dict(self.resumed_from)
        total = epoch_length * (engine.state.max_epochs or 0)
        msg = (f"resumed from {self.path} at iteration {iteration} (epoch {engine.state.epoch}"
               f"{f', {within}/{epoch_length} iterations into epoch {engine.state.epoch + 1}' if within else ' completed'})")
        if total and iteration >= total:
            msg += f"; the run is already complete ({engine.state.max_epochs} epochs)"
        self.logger.info(msg)


# ----------------------------------------------------------------------------- guards
class NonFiniteLossError(FloatingPointError):
    """Raised by :class:`NaNGuard` when the training loss becomes NaN or infinite."""


class NaNGuard:
    """Stop training at the first NaN/Inf loss with a message naming the epoch and iteration.

    Runs at every ``ITERATION_COMPLETED`` (under DDP the ranks agree by an all-reduce, so all of
    them stop at the same iteration); if the loss is not finite it raises
    :class:`NonFiniteLossError` (or, with ``raise_error=False``, logs the message and calls
    ``engine.terminate()``). Nothing is saved for the bad state: :class:`AtomicCheckpointSaver`
    refuses non-finite states, so ``checkpoint_latest.pt`` stays the last good checkpoint, which
    the message names.

    Config snippet::

        {"_target_": "svseg.handlers.NaNGuard", "output_dir": "@output_dir"}

    Args:
        output_dir: training output folder (to name the last good checkpoint in the message).
        output_transform: maps ``engine.state.output`` to the loss; default
            :func:`loss_from_output` (MONAI dicts, decollated lists, tensors).
        raise_error: raise (default, the process exits non-zero) or terminate quietly.
    """

    def __init__(self, output_dir: str | os.PathLike | None = None, output_transform: Callable | None = None,
                 raise_error: bool = True) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.output_transform = output_transform or loss_from_output
        self.raise_error = raise_error
        self.logger = logging.getLogger("svseg.handlers.NaNGuard")

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    @staticmethod
    def _any_rank_bad(bad: bool) -> bool:
        """Under DDP, whether any rank saw a non-finite loss (so all ranks stop at the same
        iteration instead of the healthy ones hanging in the next all-reduce)."""
        if not (dist.is_available() and dist.is_initialized()):
            return bad
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([1.0 if bad else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    def __call__(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        if loss is not None:
            loss = float(loss.item() if torch.is_tensor(loss) else loss)
        bad = loss is not None and not math.isfinite(loss)
        if not self._any_rank_bad(bad):
            return
        if loss is None or math.isfinite(loss):
            loss = float("nan")  # another rank's loss was not finite
        epoch_length = engine.state.epoch_length
        within = ""
        if epoch_length:
            within = f" (iteration {(engine.state.iteration - 1) % epoch_length + 1} of {epoch_length} in the epoch)"
        msg = f"non-finite training loss ({loss}) at epoch {engine.state.epoch}, iteration {engine.state.iteration}{within}. "
        last = None
        if self.output_dir is not None and (self.output_dir / LATEST_NAME).is_file():
            last = self.output_dir / LATEST_NAME
            try:
                saved = getattr(engine.state, "svseg_last_checkpoint", None)
                if saved and Path(saved["path"]) == last:
                    meta = saved
                else:  # memory-mapped: reads only the small entries of a large checkpoint
                    meta = torch.load(last, map_location="cpu", weights_only=True, mmap=True).get("meta", {})
                msg += (f"Training stopped; the last good checkpoint is {last} (epoch {meta.get('epoch')}, "
                        f"iteration {meta.get('iteration')}); nothing was saved for the bad state. ")
            except Exception:  # noqa: BLE001 - the message must still be raised
                msg += f"Training stopped; the last good checkpoint is {last}. "
        else:
            msg += "Training stopped; no checkpoint was written before it. "
        msg += "Try a lower learning rate (e.g. --optimizer#lr), gradient clipping, or check the data for NaNs."
        engine.state.svseg_nonfinite = {"epoch": int(engine.state.epoch), "iteration": int(engine.state.iteration),
                                        "loss": loss, "last_checkpoint": str(last) if last else None}
        if self.raise_error:
            raise NonFiniteLossError(msg)
        self.logger.error(msg)
        engine.terminate()


_OOM_MARKERS = ("out of memory", "cuda error: out of memory", "cudnn_status_alloc_failed",
                "can't allocate memory", "cannot allocate memory", "defaultcpuallocator: not enough memory")


def _is_oom(exc: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, (RuntimeError, MemoryError)):
        text = str(exc).lower()
        return isinstance(exc, MemoryError) or any(m in text for m in _OOM_MARKERS)
    return False


class OOMHint:
    """Re-raise out-of-memory errors with the overrides that lower memory use.

    Registered on ``EXCEPTION_RAISED``: an OOM (``torch.OutOfMemoryError``, a ``RuntimeError``
    saying "out of memory", a ``MemoryError``) is re-raised as a ``RuntimeError`` (a
    ``torch.OutOfMemoryError`` when the original was one) whose message names the epoch and
    iteration and suggests e.g. ``--batch_size 10`` or ``--roi_size [160,160]`` (the top-level
    override keys of the svseg bundles);
    any other exception is re-raised unchanged. (Registering an ``EXCEPTION_RAISED`` handler
    replaces ignite's default re-raise, so this handler always raises.) At ``STARTED`` it moves
    itself ahead of other ``EXCEPTION_RAISED`` handlers such as MONAI's ``StatsHandler``, which
    re-raise the original error and would otherwise hide the hint.

    Config snippet (the keys are the bundle's own override paths)::

        {"_target_": "svseg.handlers.OOMHint", "batch_size_key": "batch_size", "roi_key": "roi_size",
         "batch_size": "@batch_size", "roi_size": "@roi_size"}

    Args:
        batch_size_key: config path of the training batch size.
        roi_key: config path of the training ROI / patch size (``None`` to leave it out).
        batch_size: current batch size (to suggest half of it); read from the engine's data
            loader when not given.
        roi_size: current ROI (to suggest a smaller one).
    """

    def __init__(self, batch_size_key: str = "batch_size", roi_key: str | None = "roi_size",
                 batch_size: int | None = None, roi_size: Sequence[int] | None = None) -> None:
        self.batch_size_key = batch_size_key
        self.roi_key = roi_key
        self.batch_size = batch_size
        self.roi_size = list(roi_size) if roi_size is not None else None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EXCEPTION_RAISED, self)
        engine.add_event_handler(Events.STARTED, self._move_first)

    def _move_first(self, engine: Engine) -> None:
        """Handlers that re-raise the original error (MONAI's ``StatsHandler``) would hide the hint
        if they ran first, so this one moves to the front of the ``EXCEPTION_RAISED`` handlers
        once all handlers are attached (best effort on ignite's handler list)."""
        try:
            handlers = engine._event_handlers[Events.EXCEPTION_RAISED]
            mine = [h for h in handlers if h[0] is self]
            if mine and handlers[0] is not mine[0]:
                handlers.remove(mine[0])
                handlers.insert(0, mine[0])
        except (AttributeError, KeyError, TypeError, IndexError):
            pass

    def message(self, engine: Engine | None, exc: BaseException) -> str:
        """The hint text for an OOM raised in ``engine``."""
        where = ""
        if engine is not None:
            where = f" at epoch {engine.state.epoch}, iteration {engine.state.iteration}"
        batch = self.batch_size
        if batch is None and engine is not None:
            batch = getattr(getattr(engine.state, "dataloader", None), "batch_size", None)
        smaller_batch = max(1, int(batch) // 2) if batch else 1
        parts = [f"--{self.batch_size_key} {smaller_batch}"]
        if self.roi_key:
            if self.roi_size:
                smaller = [max(16, (int(s) * 3 // 4) // 16 * 16) for s in self.roi_size]
                parts.append(f"--{self.roi_key} {str(smaller).replace(' ', '')}")
            else:
                parts.append(f"--{self.roi_key} <smaller ROI>")
        return (f"out of memory{where}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}\n"
                f"Lower the memory use with a smaller batch or ROI, e.g. add the override(s) "
                f"{' and/or '.join(parts)} to the training command "
                f"(or use mixed precision with --amp true where the bundle supports it).")

    def __call__(self, engine: Engine, exc: BaseException) -> None:
        if not _is_oom(exc) or getattr(exc, "_svseg_oom_hint", False):
            raise exc  # not an OOM, or already carries the hint (ignite fires this event again outside the epoch)
        oom_type = getattr(torch, "OutOfMemoryError", None)
        new_type = oom_type if (oom_type is not None and isinstance(exc, oom_type)) else RuntimeError
        hinted = new_type(self.message(engine, exc))
        hinted._svseg_oom_hint = True
        raise hinted from exc


# ----------------------------------------------------------------------------- progress
class ProgressPlot:
    """nnU-Net style ``progress.png`` plus ``progress.csv`` / ``progress.json``, updated per epoch.

    Per epoch it records the mean training loss, the validation metric (``metric_name`` from
    ``metric_engine.state.metrics``, e.g. the validator's mean Dice), the learning rate the epoch
    trained with (read at ``EPOCH_STARTED``) and the epoch time, and redraws a 2x2 figure (loss, validation Dice, learning rate, epoch time
    against epoch; the validation metric only for epochs in which ``metric_engine`` ran). All
    files are written atomically on rank 0. After a resume the history is
    read back from ``progress.json`` (epochs after the checkpoint are dropped), so the curves
    continue; the loss of a resumed epoch averages only the iterations run after the resume.

    Config snippet (after the ``ValidationHandler``)::

        {"_target_": "svseg.handlers.ProgressPlot", "output_dir": "@output_dir",
         "optimizer": "@optimizer", "metric_engine": "@validate#evaluator",
         "metric_name": "val_mean_dice"}

    Args:
        output_dir: folder of ``progress.png`` / ``.csv`` / ``.json``.
        optimizer: optimizer whose first parameter group's ``lr`` is plotted (default
            ``engine.optimizer``).
        metric_engine: engine with the validation metric (default the trainer).
        metric_name: metric key; if absent, the first metric of ``metric_engine`` is used.
        output_transform: maps ``engine.state.output`` to the loss (default
            :func:`loss_from_output`).
        figsize: figure size in inches; with ``dpi`` it sets the PNG size
            (default 10x8 in at 100 dpi: 1000x800 pixels).
        dpi: resolution of the PNG.
    """

    columns = ("epoch", "iteration", "train_loss", "val_metric", "lr", "epoch_time")

    def __init__(self, output_dir: str | os.PathLike, optimizer: torch.optim.Optimizer | None = None,
                 metric_engine: Engine | None = None, metric_name: str | None = "val_mean_dice",
                 output_transform: Callable | None = None, figsize: Sequence[float] = (10.0, 8.0),
                 dpi: int = 100, png_name: str = "progress.png") -> None:
        self.output_dir = Path(output_dir)
        self.optimizer = optimizer
        self.metric_engine = metric_engine
        self.metric_name = metric_name
        self.output_transform = output_transform or loss_from_output
        self.figsize = tuple(figsize)
        self.dpi = int(dpi)
        self.png_path = self.output_dir / png_name
        self.json_path = self.output_dir / "progress.json"
        self.csv_path = self.output_dir / "progress.csv"
        self.history: list[dict] | None = None
        self._loss_sum = 0.0
        self._loss_n = 0
        self._epoch_lr: float | None = None
        self._fresh = False

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of ``progress.png`` in pixels."""
        return int(round(self.figsize[0] * self.dpi)), int(round(self.figsize[1] * self.dpi))

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if self.metric_engine is not None and self.metric_engine is not engine:
            self.metric_engine.add_event_handler(Events.COMPLETED, self._validation_completed)

    def _validation_completed(self, engine: Engine) -> None:
        self._fresh = True

    def _epoch_started(self, engine: Engine) -> None:
        self._loss_sum, self._loss_n = 0.0, 0
        self._epoch_lr = _current_lr(self.optimizer, engine)  # the LR this epoch trains with

    def _iteration_completed(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        if loss is not None:
            loss = float(loss.item() if torch.is_tensor(loss) else loss)
            if math.isfinite(loss):
                self._loss_sum += loss
                self._loss_n += 1

    def _load_history(self) -> list[dict]:
        import json

        if self.json_path.is_file():
            try:
                data = json.loads(self.json_path.read_text())
                if isinstance(data, list):
                    return [dict(d) for d in data]
            except (ValueError, OSError):
                pass
        return []

    def _metric(self, engine: Engine) -> float | None:
        if self.metric_engine is not None and self.metric_engine is not engine:
            if not self._fresh:
                return None  # no validation this epoch (validation interval > 1)
            self._fresh = False
        value = _metric_value(engine, self.metric_engine, self.metric_name)
        if value is None:
            eng = self.metric_engine if self.metric_engine is not None else engine
            metrics = getattr(eng.state, "metrics", None) or {}
            if metrics:
                first = next(iter(metrics.values()))
                try:
                    value = float(first.float().mean().item() if torch.is_tensor(first) else first)
                except (TypeError, ValueError):
                    value = None
        return value

    def _epoch_completed(self, engine: Engine) -> None:
        if self.history is None:
            self.history = self._load_history()
        epoch = int(engine.state.epoch)
        self.history = [h for h in self.history if int(h.get("epoch", 0)) < epoch]
        epoch_time = (getattr(engine.state, "times", {}) or {}).get(Events.EPOCH_COMPLETED.name)
        self.history.append({
            "epoch": epoch,
            "iteration": int(engine.state.iteration),
            "train_loss": self._loss_sum / self._loss_n if self._loss_n else None,
            "val_metric": self._metric(engine),
            "lr": self._epoch_lr if self._epoch_lr is not None else _current_lr(self.optimizer, engine),
            "epoch_time": float(epoch_time) if epoch_time is not None else None,
        })
        if is_rank0():
            self.write()

    def write(self) -> None:
        """Write ``progress.json``, ``progress.csv`` and ``progress.png`` from the history."""
        history = self.history or []
        atomic_save_json(history, self.json_path)
        atomic_save_csv([{k: h.get(k) for k in self.columns} for h in history], self.csv_path, fieldnames=self.columns)
        fig = plot_progress(history, figsize=self.figsize, metric_label=self.metric_name or "validation metric")
        atomic_save_figure(fig, self.png_path, dpi=self.dpi)


def plot_progress(history: Sequence[Mapping], figsize: Sequence[float] = (10.0, 8.0), metric_label: str = "val_mean_dice") -> Any:
    """A 2x2 matplotlib figure of a :class:`ProgressPlot` history (loss, metric, LR, epoch time)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    def series(key: str) -> tuple[list, list]:
        xs, ys = [], []
        for h in history:
            v = h.get(key)
            if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
                xs.append(h["epoch"])
                ys.append(v)
        return xs, ys

    fig = Figure(figsize=tuple(figsize))
    axes = fig.subplots(2, 2)
    panels = [
        ("train_loss", "training loss", "tab:blue", False),
        ("val_metric", metric_label, "tab:green", False),
        ("lr", "learning rate", "tab:orange", True),
        ("epoch_time", "epoch time (s)", "tab:red", False),
    ]
    for ax, (key, label, color, logy) in zip(axes.ravel(), panels):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, marker="o", markersize=3, color=color, label=label)
            if logy and all(y > 0 for y in ys):
                ax.set_yscale("log")
            if key == "epoch_time":
                ax.set_ylim(bottom=0)
            ax.legend(loc="best", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"svseg training progress ({len(history)} epoch{'s' if len(history) != 1 else ''})")
    fig.tight_layout()
    return fig


class ExperimentTracker:
    """Log training curves to TensorBoard (default) or MLflow.

    Logs the training loss every ``log_every`` iterations and, per epoch, the mean loss, the
    metrics of ``metric_engine`` (e.g. the validator's ``val_mean_dice``), the learning rate and
    the epoch time. TensorBoard event files go to ``<output_dir>/tensorboard``; MLflow
    (``tracking="mlflow"``, needs ``pip install 'svseg[mlflow]'``) logs to ``tracking_uri``
    (default ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<output_dir>/mlflow.db``; view with
    ``mlflow ui --backend-store-uri sqlite:///<output_dir>/mlflow.db``) under ``experiment_name``. ``tracking="none"``
    disables it. Rank 0 only.

    (In a bundle run, MONAI's own ``--tracking mlflow`` is the alternative: it needs no config
    entry; see :mod:`svseg.cli`.)

    Config snippet (``tracking`` is ``"tensorboard"``, ``"mlflow"`` or ``"none"``)::

        {"_target_": "svseg.handlers.ExperimentTracker", "output_dir": "@output_dir",
         "tracking": "tensorboard", "optimizer": "@optimizer",
         "metric_engine": "@validate#evaluator"}

    Args:
        output_dir: training output folder.
        tracking: ``"tensorboard"``, ``"mlflow"`` or ``"none"``.
        optimizer: optimizer for the learning rate (default ``engine.optimizer``).
        metric_engine: engine whose metrics are logged per epoch.
        log_every: iteration logging interval.
        experiment_name: MLflow experiment name.
        run_name: MLflow run name.
        tracking_uri: MLflow tracking URI.
        output_transform: maps ``engine.state.output`` to the loss.

    Raises:
        ValueError: for an unknown ``tracking``.
        ImportError: for ``tracking="mlflow"`` without mlflow installed.
    """

    def __init__(self, output_dir: str | os.PathLike, tracking: str | None = "tensorboard",
                 optimizer: torch.optim.Optimizer | None = None, metric_engine: Engine | None = None,
                 log_every: int = 10, experiment_name: str = "svseg", run_name: str | None = None,
                 tracking_uri: str | None = None, output_transform: Callable | None = None) -> None:
        tracking = (tracking or "none").lower()
        if tracking not in ("tensorboard", "mlflow", "none"):
            raise ValueError(f"tracking must be 'tensorboard', 'mlflow' or 'none', got {tracking!r}.")
        if tracking == "mlflow":
            try:
                import mlflow  # noqa: F401
            except ImportError as e:
                raise ImportError(
                    "tracking='mlflow' needs the optional dependency mlflow: pip install 'svseg[mlflow]' "
                    "(or use --tracking tensorboard)."
                ) from e
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}.")
        self.output_dir = Path(output_dir)
        self.tracking = tracking
        self.optimizer = optimizer
        self.metric_engine = metric_engine
        self.log_every = log_every
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.tracking_uri = tracking_uri
        self.output_transform = output_transform or loss_from_output
        self._writer: Any = None
        self._mlflow: Any = None
        self._loss_sum = 0.0
        self._loss_n = 0
        self._epoch_lr: float | None = None
        self._fresh = False

    def attach(self, engine: Engine) -> None:
        if self.tracking == "none":
            return
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.COMPLETED, self.close)
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._on_exception)
        if self.metric_engine is not None and self.metric_engine is not engine:
            self.metric_engine.add_event_handler(Events.COMPLETED, self._validation_completed)

    def _validation_completed(self, engine: Engine) -> None:
        self._fresh = True

    def _started(self, engine: Engine) -> None:
        if not is_rank0():
            return
        if self.tracking == "tensorboard" and self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))
        elif self.tracking == "mlflow" and self._mlflow is None:
            import mlflow

            mlflow.set_tracking_uri(self._resolve_tracking_uri())
            mlflow.set_experiment(self.experiment_name)
            if mlflow.active_run() is None:
                mlflow.start_run(run_name=self.run_name)
            self._mlflow = mlflow

    def _resolve_tracking_uri(self) -> str:
        """``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<output_dir>/mlflow.db``
        (MLflow 3 deprecates the plain-folder store), or ``<output_dir>/mlruns`` without SQLAlchemy."""
        if self.tracking_uri:
            return self.tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            import sqlalchemy  # noqa: F401

            return f"sqlite:///{(self.output_dir / 'mlflow.db').resolve()}"
        except ImportError:
            return (self.output_dir / "mlruns").resolve().as_uri()

    def _log(self, name: str, value: float | None, step: int) -> None:
        if value is None or not math.isfinite(value):
            return
        if self._writer is not None:
            self._writer.add_scalar(name, value, step)
        elif self._mlflow is not None:
            self._mlflow.log_metric(name.replace("/", "_"), value, step=step)

    def _epoch_started(self, engine: Engine) -> None:
        self._loss_sum, self._loss_n = 0.0, 0
        self._epoch_lr = _current_lr(self.optimizer, engine)

    def _iteration_completed(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        if loss is None:
            return
        loss = float(loss.item() if torch.is_tensor(loss) else loss)
        if math.isfinite(loss):
            self._loss_sum += loss
            self._loss_n += 1
        if engine.state.iteration % self.log_every == 0:
            self._log("train/loss", loss, engine.state.iteration)

    def _epoch_completed(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        if self._loss_n:
            self._log("train/epoch_loss", self._loss_sum / self._loss_n, epoch)
        self._log("train/lr", self._epoch_lr, epoch)
        times = getattr(engine.state, "times", {}) or {}
        t = times.get(Events.EPOCH_COMPLETED.name)
        self._log("train/epoch_time", float(t) if t is not None else None, epoch)
        fresh, self._fresh = self._fresh, False
        for eng, prefix in ((engine, "train"), (self.metric_engine, "val")):
            if eng is None or (prefix == "val" and (eng is engine or not fresh)):
                continue
            for k, v in (getattr(eng.state, "metrics", None) or {}).items():
                try:
                    value = float(v.float().mean().item() if torch.is_tensor(v) else v)
                except (TypeError, ValueError):
                    continue
                self._log(f"{prefix}/{k}", value, epoch)
        if self._writer is not None:
            self._writer.flush()

    def _on_exception(self, engine: Engine, exc: BaseException) -> None:
        self.close(engine)
        raise exc

    def close(self, engine: Engine | None = None) -> None:
        """Flush and close the writer / end the MLflow run."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._mlflow is not None:
            self._mlflow.end_run()
            self._mlflow = None


class EpochProgressBar:
    """A tqdm bar over each epoch's iterations (ignite's ``ProgressBar``) showing the loss,
    drawn only when :func:`progress_enabled` (an interactive terminal, or ``SVSEG_PROGRESS=1``).

    Config snippet::

        {"_target_": "svseg.handlers.EpochProgressBar"}

    Args:
        persist: keep each finished epoch's bar on screen.
        enabled: force on/off; default :func:`progress_enabled`.
    """

    def __init__(self, persist: bool = False, enabled: bool | None = None) -> None:
        self.persist = persist
        self.enabled = progress_enabled() if enabled is None else bool(enabled)
        self.bar: Any = None

    def attach(self, engine: Engine) -> None:
        if not self.enabled or not is_rank0():
            return
        from ignite.contrib.handlers import ProgressBar

        self.bar = ProgressBar(persist=self.persist)
        self.bar.attach(engine, output_transform=lambda out: {"loss": loss_from_output(out) or float("nan")})
