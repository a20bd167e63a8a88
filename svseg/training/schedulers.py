"""Learning-rate rules of the five papers, built on torch schedulers where one fits.

- :func:`poly_scheduler`: torch's ``PolynomialLR`` stepped per iteration (the TransUNet/MSA2Net
  poly 0.9 decay); the function only turns epochs into the total iteration count.
- :func:`warmup_cosine_scheduler`: SvANet's linear warm-up from an absolute start LR, then a
  cosine to an absolute floor, per iteration. torch's ``LinearLR`` + ``CosineAnnealingLR`` in a
  ``SequentialLR`` come close, but ``LinearLR`` starts at a factor of each group's LR (the
  authors start at an absolute LR) and the chained cosine is updated recursively instead of in
  closed form; one ``LambdaLR`` gives the authors' formula exactly.
- :func:`scaled_lr`: the MSA2Net/TransUNet batch-size rule, a plain function for configs.
- :class:`HalveLROnStall`: MSGA's rule ("halve when ``epoch % (best_epoch + 50) == 0``") depends
  on the validator's best epoch, which neither torch's ``ReduceLROnPlateau`` (patience counted
  from the last improvement, on a value passed to ``step``) nor MONAI's ``LrScheduleHandler``
  can express.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["poly_scheduler", "warmup_cosine_scheduler", "scaled_lr", "HalveLROnStall"]

logger = logging.getLogger(__name__)


def scaled_lr(base_lr: float, batch_size: int, reference_batch: int = 24, divisor: int = 5) -> float:
    """The MSA2Net/TransUNet rule: ``lr = base_lr * bs / 24`` if ``bs != 24`` and ``bs % 5 == 0``."""
    batch_size = int(batch_size)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if batch_size != reference_batch and batch_size % divisor == 0:
        return float(base_lr) * batch_size / reference_batch
    return float(base_lr)


def poly_scheduler(optimizer: torch.optim.Optimizer, max_epochs: int, epoch_length: int,
                   power: float = 0.9) -> torch.optim.lr_scheduler.LRScheduler:
    """Poly decay per iteration, ``lr = base * (1 - it / (max_epochs * epoch_length)) ** power``."""
    total = int(max_epochs) * int(epoch_length)
    if total <= 0:
        raise ValueError(f"max_epochs * epoch_length must be positive, got {max_epochs} * {epoch_length}.")
    return torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=float(power))


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, max_epochs: int, epoch_length: int,
                            warmup_epochs: float = 1.0, warmup_init_lr: float = 5e-5, min_lr: float = 1e-6
                            ) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-iteration linear warm-up from ``warmup_init_lr`` to the optimizer's LR, then cosine down to ``min_lr``.

    SvANet's ``mycosine`` shape (AdamW max LR 5e-4, warm-up start 5e-5, final 1e-6).
    """
    total = int(max_epochs) * int(epoch_length)
    if total <= 0:
        raise ValueError(f"max_epochs * epoch_length must be positive, got {max_epochs} * {epoch_length}.")
    warm = min(max(int(round(float(warmup_epochs) * int(epoch_length))), 0), total - 1)
    base = [g["lr"] for g in optimizer.param_groups]

    def factor(i: int, b: float) -> float:
        if i < warm:
            return (warmup_init_lr + (b - warmup_init_lr) * i / max(warm, 1)) / b
        t = (i - warm) / max(total - warm, 1)
        return (min_lr + 0.5 * (b - min_lr) * (1.0 + math.cos(math.pi * min(t, 1.0)))) / b

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda i, b=b: factor(i, b) for b in base])


class HalveLROnStall:
    """MSGA's schedule: halve the LR whenever ``epoch % (best_epoch + patience) == 0``.

    ``best_epoch`` is the validator's best key-metric epoch (MONAI evaluators track
    ``state.best_metric_epoch``), 0 before any validation, as in the authors' ``main.py``.

    Config snippet (in ``train_handlers``, after the validation handler)::

        {"_target_": "svseg.training.HalveLROnStall", "optimizer": "@optimizer",
         "validator": "@validate#evaluator", "patience": 50}

    Args:
        optimizer: the optimizer whose LR is halved.
        validator: the evaluator that selects the best epoch.
        patience: the ``50`` of the authors' rule.
        factor: multiplier applied (0.5).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, validator: Any = None, patience: int = 50,
                 factor: float = 0.5) -> None:
        if int(patience) < 1:
            raise ValueError(f"patience must be >= 1, got {patience}.")
        self.optimizer = optimizer
        self.validator = validator
        self.patience = int(patience)
        self.factor = float(factor)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        best = 0
        if self.validator is not None:
            best = max(int(getattr(self.validator.state, "best_metric_epoch", -1) or 0), 0)
        if engine.state.epoch % (best + self.patience) == 0:
            for g in self.optimizer.param_groups:
                g["lr"] *= self.factor
            logger.info("epoch %d: LR halved to %.3g (best epoch %d)", engine.state.epoch,
                        self.optimizer.param_groups[0]["lr"], best)
