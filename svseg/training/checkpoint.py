"""Exact, atomic, resumable training checkpoints.

Holds the sampler, the saver and the resumer that together let a killed run continue where it
stopped and end bit-identical to an uninterrupted run (``tests/training/test_checkpoint.py``
kills one with SIGKILL), plus the helpers they share with the other training handlers.

- :class:`ResumableSampler`: ``torch.utils.data.DistributedSampler`` already makes the order a
  function of ``(seed, epoch)``; what it lacks is a way to skip the part of an epoch that was
  trained before the kill. Without that, a mid-epoch resume draws a fresh permutation.
- :class:`AtomicCheckpointSaver`: MONAI's ``CheckpointSaver`` (ignite's ``Checkpoint``) saves
  objects with a ``state_dict``, but not the Python/NumPy/torch RNG states, the random states
  of MONAI transforms, or the AMP scaler of a MONAI trainer, and it saves whatever the weights
  are, NaN included. This saver writes all of it in one file through
  :func:`svseg.io.atomic_torch_save`, refuses non-finite states and keeps a best-metric copy.
  With ``final_path`` it also writes the bare final weights, as ``CheckpointSaver(save_final=True)``.
- :class:`CheckpointResumer`: MONAI's ``CheckpointLoader`` restores ``state_dict`` objects and
  the engine counters, but no RNG state, cannot make the sampler skip trained batches, and keeps
  the saved epoch length when the batch size changed since (e.g. after an out-of-memory error).
- Helpers: :func:`data_stream_position` (where in ignite's data stream an iteration falls),
  :func:`loss_from_output` and :func:`metric_value` (the guards and progress handlers use them
  too). The RNG states live in :mod:`svseg.training.rng`.

Everything that writes files does so on rank 0 only when ``torch.distributed`` is initialised.
The package docstring (:mod:`svseg.training`) shows a complete ``train_handlers`` list.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from torch.utils.data.distributed import DistributedSampler

from svseg.io import atomic_torch_save
from svseg.runtime import is_rank0
from svseg.training.rng import (
    collect_rng_state,
    random_state_from_dict,
    random_state_to_dict,
    restore_rng_state,
    transform_random_states,
)

__all__ = [
    "LATEST_NAME", "BEST_NAME", "ResumableSampler", "AtomicCheckpointSaver", "CheckpointResumer",
    "data_stream_position", "unwrap_network", "loss_from_output", "metric_value",
]

LATEST_NAME = "checkpoint_latest.pt"
BEST_NAME = "checkpoint_best.pt"
_FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- helpers
def unwrap_network(network: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DistributedDataParallel / DataParallel wrappers."""
    while isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        network = network.module
    return network


def data_stream_position(iteration: int, epoch_length: int, loader_length: int) -> tuple[int, int]:
    """Where ignite's data stream stands after ``iteration`` iterations: ``(sampler epoch, offset)``.

    ignite creates a data iterator when the previous one runs out, even inside an epoch, and keeps an
    iterator that is not exhausted from one epoch into the next (when ``epoch_length`` differs from
    ``len(dataloader)``). MONAI sets the sampler's epoch at every epoch start, so each pass over the
    loader uses the permutation of the epoch in which it began. This returns that epoch for the pass
    under way after ``iteration`` iterations, and how many of its batches were already drawn.
    """
    if epoch_length <= 0 or loader_length <= 0:
        raise ValueError(f"epoch_length and loader_length must be positive, got {epoch_length}, {loader_length}.")
    start = (int(iteration) // int(loader_length)) * int(loader_length)
    return start // int(epoch_length) + 1, int(iteration) - start


def loss_from_output(output: Any) -> float | None:
    """The scalar loss of an engine output: a MONAI dict (``"loss"`` key), a decollated list of
    such dicts, a tensor or a number. ``None`` if there is none."""
    if output is None:
        return None
    if isinstance(output, (list, tuple)):
        return loss_from_output(output[0]) if output else None
    if isinstance(output, Mapping):
        return loss_from_output(output["loss"]) if "loss" in output else None
    if torch.is_tensor(output):
        return float(output.detach().float().item()) if output.numel() == 1 else None
    if isinstance(output, (int, float, np.floating, np.integer)):
        return float(output)
    return None


def metric_value(engine: Engine, metric_engine: Engine | None, key: str | None) -> float | None:
    """Metric ``key`` from ``metric_engine.state.metrics``, else from ``engine``'s (tensors are
    averaged); ``None`` if neither has it."""
    if key is None:
        return None
    for eng in (metric_engine, engine):
        if eng is None:
            continue
        metrics = getattr(eng.state, "metrics", None) or {}
        if key in metrics:
            value = metrics[key]
            return float(value.float().mean().item() if torch.is_tensor(value) else value)
    return None


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
        with contextlib.suppress(OSError):
            os.unlink(tmp)


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
                       "sampler": {"_target_": "svseg.training.ResumableSampler",
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
        self._pass_epoch: int | None = None

    def skip_next(self, num_samples: int, epoch: int | None = None) -> None:
        """Skip the first ``num_samples`` indices of the next iteration over this sampler only.

        With ``epoch``, that next iteration also uses the permutation of ``epoch`` (the pass an
        interrupted run was in the middle of); later iterations use :meth:`set_epoch`'s epoch again.
        """
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}.")
        self._skip = int(num_samples)
        self._pass_epoch = None if epoch is None else int(epoch)

    def __iter__(self) -> Iterator[int]:
        current = self.epoch
        if self._pass_epoch is not None:
            self.epoch = self._pass_epoch
        try:
            indices = list(super().__iter__())
        finally:
            self.epoch = current
        skip, self._skip, self._pass_epoch = self._skip, 0, None
        return iter(indices[skip:])


# ----------------------------------------------------------------------------- checkpoints
class AtomicCheckpointSaver:
    """Save the whole training state atomically: ``<output_dir>/checkpoint_latest.pt`` every
    ``save_interval`` iterations and at every epoch end, and ``checkpoint_best.pt`` whenever the
    key metric improves.

    The checkpoint is a dict with ``network`` (unwrapped from DDP), ``optimizer``,
    ``lr_scheduler``, ``scaler`` (MONAI's AMP ``GradScaler``, when ``amp=True``), ``trainer``
    (ignite ``engine.state_dict()``: iteration, epoch_length, max_epochs), ``rng``
    (Python/NumPy/torch, see :func:`collect_rng_state`), ``transform_rng`` (the random states of
    MONAI random transforms when the loader has no workers), ``best`` (best metric so far) and
    ``meta`` (epoch, iteration, whether the epoch's handlers had completed, time, format
    version). It is written to a temporary file in ``output_dir`` and renamed
    (:func:`svseg.io.atomic_torch_save`), so a kill during a save leaves the previous complete
    file. A state whose loss or weights are not finite is never saved, so the latest checkpoint
    is always the last good one. Saves happen on rank 0 only.

    The iteration save skips an epoch's last iteration: the ``EPOCH_COMPLETED`` save covers it
    (after validation, when this handler is attached after the validation handler).

    With ``final_path``, at ``COMPLETED`` (also after ``engine.terminate()``, not after an
    exception) the bare network ``state_dict`` (unwrapped from DDP) is written atomically there:
    the file MONAI's ``CheckpointSaver(save_dict={"model": net}, save_final=True)`` writes.

    Config snippet (put it last in ``train_handlers``)::

        {"_target_": "svseg.training.AtomicCheckpointSaver", "output_dir": "@output_dir",
         "network": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler",
         "save_interval": 50, "key_metric": "val_mean_dice", "metric_engine": "@validate#evaluator",
         "final_path": "$@ckpt_dir + '/model_final.pt'"}

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
        latest_name, best_name: file names of the latest and the best checkpoint.
        final_path: where to write the final network weights at ``COMPLETED`` (``None``: nowhere).
    """

    def __init__(self, output_dir: str | os.PathLike, network: torch.nn.Module,
                 optimizer: torch.optim.Optimizer | None = None, lr_scheduler: Any = None,
                 save_interval: int = 0, save_epoch: bool = True, key_metric: str | None = None,
                 metric_engine: Engine | None = None, key_metric_mode: str = "max",
                 latest_name: str = LATEST_NAME, best_name: str = BEST_NAME,
                 final_path: str | os.PathLike | None = None) -> None:
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
        self.final_path = Path(final_path) if final_path not in (None, "") else None
        self.logger = logging.getLogger("svseg.training.AtomicCheckpointSaver")
        self.last_saved_iteration: int | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        if self.save_interval > 0:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_interval), self._iteration_completed)
        if self.save_epoch or self.key_metric:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        if self.final_path is not None:
            engine.add_event_handler(Events.COMPLETED, self.save_final)

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
            for p in unwrap_network(self.network).parameters():
                if not bool(torch.isfinite(p).all()):
                    return False
        return True

    def checkpoint(self, engine: Engine, epoch_completed: bool) -> dict:
        """The checkpoint dict for the engine's current state."""
        dataloader = getattr(engine.state, "dataloader", None)
        return {
            "network": unwrap_network(self.network).state_dict(),
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler is not None else None,
            "scaler": _scaler_state(engine),
            "trainer": {k: v for k, v in engine.state_dict().items() if k != "epoch"},
            "rng": collect_rng_state(),
            "transform_rng": [random_state_to_dict(rs) for rs in transform_random_states(dataloader)],
            "best": {"metric": self.key_metric, "value": getattr(engine.state, "svseg_best_metric", None)},
            "meta": {
                "format_version": _FORMAT_VERSION,
                "epoch": int(engine.state.epoch),
                "iteration": int(engine.state.iteration),
                "epoch_completed": bool(epoch_completed),
                "time": time.time(),
            },
        }

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

    def save_final(self, engine: Engine | None = None) -> Path | None:
        """Write the bare network ``state_dict`` to ``final_path`` (rank 0); returns the path
        written, or ``None`` (no ``final_path``, or not rank 0)."""
        if self.final_path is None or not is_rank0():
            return None
        atomic_torch_save(unwrap_network(self.network).state_dict(), self.final_path)
        self.logger.info(f"training completed; saved the final weights to {self.final_path}")
        return self.final_path

    def _iteration_completed(self, engine: Engine) -> None:
        epoch_length = engine.state.epoch_length
        if epoch_length and engine.state.iteration % epoch_length == 0:
            return  # end of an epoch: saved at EPOCH_COMPLETED, after the epoch's handlers
        self.save(engine, epoch_completed=False)

    def _epoch_completed(self, engine: Engine) -> None:
        if self.key_metric:
            value = metric_value(engine, self.metric_engine, self.key_metric)
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
    and the trainer's iteration/epoch (ignite then runs only the rest of the interrupted epoch,
    because it counts the epoch's iterations from ``iteration % epoch_length``), keeping the
    trainer's own ``max_epochs`` so the resumed run ends after the same number of epochs as an
    uninterrupted one (as MONAI's ``CheckpointLoader``). The Python/NumPy/torch RNG states are
    restored right away when the checkpoint falls where the uninterrupted run started a new pass
    over the data loader, and otherwise just after the resumed data iterator is created (before its
    first batch), which is where the uninterrupted run had them. With a :class:`ResumableSampler`
    the resumed pass uses the permutation of the epoch it began in and skips the batches already
    trained (:func:`data_stream_position`; this also covers ``epoch_length != len(dataloader)``,
    where ignite carries one data iterator across epochs), so the resumed run reproduces the
    uninterrupted one exactly (same data order, same dropout/augmentation draws; bit-identical on
    CPU, and on GPU up to the non-determinism of cuDNN kernels). Random transforms run in loader
    workers are exact only for a resume where a new pass begins.

    Config snippet (first in ``train_handlers``; ``resume`` is ``"auto"``, ``true`` or ``false``)::

        {"_target_": "svseg.training.CheckpointResumer", "output_dir": "@output_dir",
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
            words = {"auto": "auto", "true": True, "1": True, "yes": True,
                     "false": False, "0": False, "no": False, "none": False, "": False}
            if resume.strip().lower() not in words:
                raise ValueError(f"resume must be 'auto', True or False, got {resume!r}.")
            resume = words[resume.strip().lower()]
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
        self.logger = logging.getLogger("svseg.training.CheckpointResumer")
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

    def _load(self) -> Mapping:
        try:
            ckpt = torch.load(self.path, map_location=self.map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - re-raised with the file and the way out
            raise RuntimeError(
                f"cannot read the checkpoint {self.path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "move it away or set resume=False to start a new run."
            ) from e
        if not isinstance(ckpt, Mapping) or "trainer" not in ckpt or "network" not in ckpt:
            raise ValueError(f"{self.path} is not an svseg training checkpoint (no 'trainer'/'network' entries).")
        return ckpt

    def _started(self, engine: Engine) -> None:
        if not self.resume:
            return
        assert self.path is not None
        if not self.path.is_file():
            if self.resume == "auto":
                self.logger.info(f"no checkpoint at {self.path}; starting a new run.")
                return
            raise FileNotFoundError(f"resume=True but the checkpoint {self.path} does not exist.")
        ckpt = self._load()
        unwrap_network(self.network).load_state_dict(ckpt["network"], strict=self.strict)
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

        states = transform_random_states(getattr(engine.state, "dataloader", None))
        saved = ckpt.get("transform_rng") or []
        if states and len(states) == len(saved):
            for rs, d in zip(states, saved):
                random_state_from_dict(rs, d)
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
        pass_epoch, offset = (data_stream_position(iteration, epoch_length, loader_len)
                              if loader_len and epoch_length else (engine.state.epoch + 1, within))
        if offset and not length_changed:
            # inside a pass over the loader: skip the batches it already gave, with that pass's
            # permutation, and restore the RNGs once the data iterator exists
            sampler = self._sampler(engine)
            batch_size = getattr(loader, "batch_size", None)
            if isinstance(sampler, ResumableSampler) and batch_size:
                sampler.skip_next(offset * int(batch_size), epoch=pass_epoch)
            else:
                self.logger.warning(
                    "resuming inside a pass over the data without skipping the trained batches (that needs "
                    "svseg.training.ResumableSampler as the loader's sampler): the rest of that pass uses a new data order."
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
