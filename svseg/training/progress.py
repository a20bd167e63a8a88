"""What a person watching a training run sees: curves, a progress bar, TensorBoard.

- :class:`ProgressPlot` (and :func:`plot_progress`, which draws its figure): MONAI's
  ``StatsHandler`` / ``TensorBoardStatsHandler`` log numbers, and its ``MetricsSaver`` writes
  per-case metrics of one evaluation; none of them keeps a per-epoch history (loss, validation
  Dice, learning rate, epoch time) as ``progress.png`` / ``.csv`` / ``.json``, written atomically
  and continued after a resume, as nnU-Net does.
- :class:`EpochProgressBar`: ignite's ``ProgressBar`` draws even when stderr is a log file (a
  carriage-return mess in CI) and cannot read the loss from MONAI's decollated output; this
  attaches it only where :func:`svseg.runtime.progress_enabled` says so, with the loss shown.
- :class:`TensorBoardStats`: MONAI's ``TensorBoardStatsHandler`` opens its event file when it
  is built, so under DDP every rank writes one; this builds it only when attached.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from monai.handlers import TensorBoardStatsHandler

from svseg.io import atomic_save_csv, atomic_save_figure, atomic_save_json
from svseg.runtime import is_rank0, progress_enabled
from svseg.training.checkpoint import loss_from_output, metric_value

__all__ = ["ProgressPlot", "plot_progress", "EpochProgressBar", "TensorBoardStats"]


def _current_lr(optimizer: torch.optim.Optimizer | None, engine: Engine) -> float | None:
    optimizer = optimizer if optimizer is not None else getattr(engine, "optimizer", None)
    if optimizer is None or not getattr(optimizer, "param_groups", None):
        return None
    return float(optimizer.param_groups[0]["lr"])


class ProgressPlot:
    """nnU-Net style ``progress.png`` plus ``progress.csv`` / ``progress.json``, updated per epoch.

    Per epoch it records the mean training loss, the validation metric (``metric_name`` from
    ``metric_engine.state.metrics``, e.g. the validator's mean Dice), the learning rate the epoch
    trained with (read at ``EPOCH_STARTED``) and the epoch time, and redraws a 2x2 figure (loss,
    validation Dice, learning rate, epoch time against epoch; the validation metric only for
    epochs in which ``metric_engine`` ran). All files are written atomically on rank 0. After a
    resume the history is read back from ``progress.json`` (epochs after the checkpoint are
    dropped), so the curves continue; the loss of a resumed epoch averages only the iterations
    run after the resume.

    Config snippet (after the validation handler)::

        {"_target_": "svseg.training.ProgressPlot", "output_dir": "@output_dir",
         "optimizer": "@optimizer", "metric_engine": "@validate#evaluator",
         "metric_name": "val_mean_dice"}

    Args:
        output_dir: folder of ``progress.png`` / ``.csv`` / ``.json``.
        optimizer: optimizer whose first parameter group's ``lr`` is plotted (default
            ``engine.optimizer``).
        metric_engine: engine with the validation metric (default the trainer).
        metric_name: metric key; if absent, the first metric of ``metric_engine`` is used.
        output_transform: maps ``engine.state.output`` to the loss (default
            :func:`svseg.training.loss_from_output`).
        figsize: figure size in inches; with ``dpi`` it sets the PNG size
            (default 10x8 in at 100 dpi: 1000x800 pixels).
        dpi: resolution of the PNG.
        png_name: file name of the figure.
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
        value = metric_value(engine, self.metric_engine, self.metric_name)
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
    """A 2x2 matplotlib figure of a :class:`ProgressPlot` history (loss, metric, LR, epoch time).

    matplotlib is imported here, on the first plot, so that importing :mod:`svseg.training`
    stays light for runs without a ``ProgressPlot``.
    """
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


class EpochProgressBar:
    """A tqdm bar over each epoch's iterations (ignite's ``ProgressBar``) showing the loss,
    drawn only when :func:`svseg.runtime.progress_enabled` (an interactive terminal, or
    ``SVSEG_PROGRESS=1``) and on rank 0.

    Config snippet::

        {"_target_": "svseg.training.EpochProgressBar"}

    Args:
        persist: keep each finished epoch's bar on screen.
        enabled: force on/off; default :func:`svseg.runtime.progress_enabled`.
    """

    def __init__(self, persist: bool = False, enabled: bool | None = None) -> None:
        self.persist = persist
        self.enabled = progress_enabled() if enabled is None else bool(enabled)
        self.bar: Any = None

    def attach(self, engine: Engine) -> None:
        if not self.enabled or not is_rank0():
            return
        self.bar = ProgressBar(persist=self.persist)
        self.bar.attach(engine, output_transform=lambda out: {"loss": loss_from_output(out) or float("nan")})


class TensorBoardStats:
    """MONAI's ``TensorBoardStatsHandler`` that opens its event file only when attached.

    MONAI's handler creates its ``SummaryWriter`` (and an event file) in ``__init__``; under DDP
    every rank builds the handler list, so ranks that never attach it would still write empty
    event files. This wrapper builds the MONAI handler in :meth:`attach`, so only the ranks that
    use it (rank 0, see :func:`svseg.training.rank_zero_handlers`) write anything. Arguments are
    those of ``monai.handlers.TensorBoardStatsHandler``.

    Config snippet::

        {"_target_": "svseg.training.TensorBoardStats", "log_dir": "@output_dir",
         "tag_name": "train_loss", "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"}
    """

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.handler: Any = None

    def attach(self, engine: Engine) -> None:
        self.handler = TensorBoardStatsHandler(**self.kwargs)
        self.handler.attach(engine)

    def close(self) -> None:
        """Close the MONAI handler's writer (no-op before :meth:`attach`)."""
        if self.handler is not None:
            self.handler.close()
