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

from svseg.training import checkpoint, distributed, guards, progress, rng, schedulers, validation
from svseg.training.checkpoint import *  # noqa: F403
from svseg.training.distributed import *  # noqa: F403
from svseg.training.guards import *  # noqa: F403
from svseg.training.progress import *  # noqa: F403
from svseg.training.rng import *  # noqa: F403
from svseg.training.schedulers import *  # noqa: F403
from svseg.training.validation import *  # noqa: F403

# the package's API is the union of its modules' __all__, each name listed once, where it is defined
__all__: list[str] = []
__all__ += checkpoint.__all__
__all__ += rng.__all__
__all__ += guards.__all__
__all__ += progress.__all__
__all__ += schedulers.__all__
__all__ += validation.__all__
__all__ += distributed.__all__
