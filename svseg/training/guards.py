"""Handlers that stop a failing run with a message that says what to do next.

- :class:`NaNGuard` (raises :class:`NonFiniteLossError`): ignite's ``TerminateOnNan`` only logs a
  warning and terminates (the process then exits 0 as if training had succeeded), checks every
  tensor of the output (images and predictions of MONAI's decollated dicts too, not the loss),
  does not agree across DDP ranks (a healthy rank then hangs in its next all-reduce), and names
  neither the iteration within the epoch nor the last good checkpoint to resume from.
- :class:`OOMHint`: neither ignite nor MONAI translates an out-of-memory error into the config
  overrides that lower memory use; MONAI's ``StatsHandler`` re-raises the original error, so this
  handler also moves itself ahead of it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from svseg.training.checkpoint import LATEST_NAME, loss_from_output

__all__ = ["NonFiniteLossError", "NaNGuard", "OOMHint", "is_out_of_memory"]


class NonFiniteLossError(FloatingPointError):
    """Raised by :class:`NaNGuard` when the training loss becomes NaN or infinite."""


class NaNGuard:
    """Stop training at the first NaN/Inf loss with a message naming the epoch and iteration.

    Runs at every ``ITERATION_COMPLETED`` (under DDP the ranks agree by an all-reduce, so all of
    them stop at the same iteration); if the loss is not finite it raises
    :class:`NonFiniteLossError` (or, with ``raise_error=False``, logs the message and calls
    ``engine.terminate()``). Nothing is saved for the bad state:
    :class:`svseg.training.AtomicCheckpointSaver` refuses non-finite states, so
    ``checkpoint_latest.pt`` stays the last good checkpoint, which the message names.

    Config snippet::

        {"_target_": "svseg.training.NaNGuard", "output_dir": "@output_dir"}

    Args:
        output_dir: training output folder (to name the last good checkpoint in the message).
        output_transform: maps ``engine.state.output`` to the loss; default
            :func:`svseg.training.loss_from_output` (MONAI dicts, decollated lists, tensors).
        raise_error: raise (default, the process exits non-zero) or terminate quietly.
    """

    def __init__(self, output_dir: str | os.PathLike | None = None, output_transform: Callable | None = None,
                 raise_error: bool = True) -> None:
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.output_transform = output_transform or loss_from_output
        self.raise_error = raise_error
        self.logger = logging.getLogger("svseg.training.NaNGuard")

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


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory error: ``torch.OutOfMemoryError``, a ``MemoryError``,
    or a ``RuntimeError`` whose message says so (CUDA, cuDNN, the CPU allocator)."""
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
    override keys of the svseg bundles); any other exception is re-raised unchanged.
    (Registering an ``EXCEPTION_RAISED`` handler replaces ignite's default re-raise, so this
    handler always raises.) At ``STARTED`` it moves itself ahead of other ``EXCEPTION_RAISED``
    handlers such as MONAI's ``StatsHandler``, which re-raise the original error and would
    otherwise hide the hint.

    Config snippet (the keys are the bundle's own override paths)::

        {"_target_": "svseg.training.OOMHint", "batch_size_key": "batch_size", "roi_key": "roi_size",
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
        if not is_out_of_memory(exc) or getattr(exc, "_svseg_oom_hint", False):
            raise exc  # not an OOM, or already carries the hint (ignite fires this event again outside the epoch)
        oom_type = getattr(torch, "OutOfMemoryError", None)
        new_type = oom_type if (oom_type is not None and isinstance(exc, oom_type)) else RuntimeError
        hinted = new_type(self.message(engine, exc))
        hinted._svseg_oom_hint = True
        raise hinted from exc
