"""Everything svseg adds to a MONAI ``SupervisedTrainer``, one concept per module.

The libraries come first: the bundles use MONAI's trainer, evaluator, ``StatsHandler``,
``LrScheduleHandler`` and ``CheckpointSaver`` wherever they do the job. The handlers here exist
for what those lack; each module's docstring says what, for each class.

- :mod:`svseg.training.checkpoint`: exact, atomic, resumable checkpoints
  (:class:`ResumableSampler`, :class:`AtomicCheckpointSaver`, :class:`CheckpointResumer`, RNG
  state helpers, :func:`loss_from_output`).
- :mod:`svseg.training.guards`: :class:`NaNGuard`, :class:`OOMHint`.
- :mod:`svseg.training.progress`: :class:`ProgressPlot`, :class:`EpochProgressBar`,
  :class:`TensorBoardStats`.
- :mod:`svseg.training.schedulers`: the papers' learning-rate rules.
- :mod:`svseg.training.validation`: :class:`PeriodicValidation`.
- :mod:`svseg.training.distributed`: torchrun helpers.

Bundle configs name them from here, e.g. ``"_target_": "svseg.training.AtomicCheckpointSaver"``
or ``"$svseg.training.poly_scheduler(...)"``.

A complete ``train_handlers`` list of a bundle (order matters at ``EPOCH_COMPLETED``: validation first, the
checkpoint saver last)::

    "train_handlers": [
      {"_target_": "svseg.training.CheckpointResumer", "output_dir": "@output_dir",
       "network": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler",
       "resume": "@resume"},
      {"_target_": "svseg.training.NaNGuard", "output_dir": "@output_dir"},
      {"_target_": "svseg.training.OOMHint", "batch_size_key": "batch_size", "roi_key": "roi_size",
       "batch_size": "@batch_size", "roi_size": "@roi_size"},
      {"_target_": "svseg.training.PeriodicValidation", "validator": "@validate#evaluator",
       "interval": 1},
      {"_target_": "svseg.training.ProgressPlot", "output_dir": "@output_dir",
       "optimizer": "@optimizer", "metric_engine": "@validate#evaluator"},
      {"_target_": "svseg.training.EpochProgressBar"},
      {"_target_": "svseg.training.AtomicCheckpointSaver", "output_dir": "@output_dir",
       "network": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler",
       "save_interval": 50, "key_metric": "val_mean_dice",
       "metric_engine": "@validate#evaluator", "final_path": "$@output_dir + '/model_final.pt'"}
    ]
"""

from __future__ import annotations

from svseg.training.checkpoint import (
    BEST_NAME,
    LATEST_NAME,
    AtomicCheckpointSaver,
    CheckpointResumer,
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
from svseg.training.distributed import RANK_ZERO_ONLY, destroy_distributed, init_distributed, rank_zero_handlers
from svseg.training.guards import NaNGuard, NonFiniteLossError, OOMHint, is_out_of_memory
from svseg.training.progress import EpochProgressBar, ProgressPlot, TensorBoardStats, plot_progress
from svseg.training.schedulers import HalveLROnStall, poly_scheduler, scaled_lr, warmup_cosine_scheduler
from svseg.training.validation import PeriodicValidation

__all__ = [
    # checkpoint
    "LATEST_NAME",
    "BEST_NAME",
    "ResumableSampler",
    "AtomicCheckpointSaver",
    "CheckpointResumer",
    "collect_rng_state",
    "restore_rng_state",
    "transform_random_states",
    "random_state_to_dict",
    "random_state_from_dict",
    "unwrap_network",
    "loss_from_output",
    "metric_value",
    # guards
    "NonFiniteLossError",
    "NaNGuard",
    "OOMHint",
    "is_out_of_memory",
    # progress
    "ProgressPlot",
    "plot_progress",
    "EpochProgressBar",
    "TensorBoardStats",
    # schedulers
    "poly_scheduler",
    "warmup_cosine_scheduler",
    "scaled_lr",
    "HalveLROnStall",
    # validation
    "PeriodicValidation",
    # distributed
    "RANK_ZERO_ONLY",
    "init_distributed",
    "destroy_distributed",
    "rank_zero_handlers",
]
