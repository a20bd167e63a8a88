"""When to validate during training, and when to stop early.

- :class:`PeriodicValidation`: a :class:`monai.handlers.ValidationHandler` (same ``validator`` /
  ``interval`` arguments, ``set_validator``, the same ``validator.run(epoch)``) with what MONAI's
  lacks for the papers' recipes:

  * a first epoch that may validate (``start_epoch``; MSA2Net evaluates from half the schedule
    on). MONAI's validates at every ``interval``-th epoch from the start.
  * a validation after the last epoch whatever the interval, so the key-metric checkpoint
    (``model.pt``) exists after any schedule. MONAI's skips it unless ``max_epochs`` is a
    multiple of ``interval``.
  * early stopping counted in *epochs* since the validator's ``best_metric_epoch`` (SA2-Net).
    MONAI's ``EarlyStopHandler`` (ignite's ``EarlyStopping``) counts patience in *validation
    runs* and needs a separate score function; with ``interval > 1`` its patience means a
    different number of epochs.
"""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from monai.engines import Evaluator
from monai.handlers import ValidationHandler

__all__ = ["PeriodicValidation"]

logger = logging.getLogger(__name__)


class PeriodicValidation(ValidationHandler):
    """Run ``validator`` every ``interval`` epochs from ``start_epoch`` on, and always after the last epoch.

    The MSA2Net recipe evaluates from half the schedule on; running at the last epoch as well
    guarantees that the key-metric checkpoint exists after any schedule. With
    ``early_stop_patience`` the training stops once the key metric has not improved for that many
    epochs (SA2-Net's early stopping), read from the validator's ``best_metric_epoch``.

    Config snippet (in ``train_handlers``, in place of MONAI's ``ValidationHandler``)::

        {"_target_": "svseg.training.PeriodicValidation", "validator": "@validate#evaluator",
         "interval": "@val_interval", "start_epoch": "@val_start_epoch"}

    Args:
        validator: a MONAI evaluator (``None``: call ``set_validator`` before training).
        interval: validate every ``interval`` epochs.
        start_epoch: first epoch that may validate.
        early_stop_patience: stop after this many epochs without a new best metric (``None``: never).

    Raises:
        ValueError: for ``interval < 1`` or ``early_stop_patience < 1``.
        TypeError: when ``validator`` is not a ``monai.engines.Evaluator`` (as MONAI's handler).
    """

    def __init__(self, validator: Evaluator | None, interval: int = 1, start_epoch: int = 0,
                 early_stop_patience: int | None = None) -> None:
        if int(interval) < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        if early_stop_patience is not None and int(early_stop_patience) < 1:
            raise ValueError(f"early_stop_patience must be None or >= 1, got {early_stop_patience}.")
        super().__init__(interval=int(interval), validator=validator, epoch_level=True, exec_at_start=False)
        self.start_epoch = int(start_epoch)
        self.early_stop_patience = None if early_stop_patience is None else int(early_stop_patience)

    def attach(self, engine: Engine) -> None:
        """Check at every epoch end (MONAI's handler fires only every ``interval`` epochs)."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        last = epoch >= engine.state.max_epochs
        if not (last or (epoch >= self.start_epoch and epoch % self.interval == 0)):
            return
        super().__call__(engine)  # validator.run(engine.state.epoch)
        if self.early_stop_patience is None or last:
            return
        best = int(getattr(self.validator.state, "best_metric_epoch", -1) or -1)
        if best > 0 and epoch - best >= self.early_stop_patience:
            logger.info("early stopping at epoch %d: no better key metric since epoch %d", epoch, best)
            engine.terminate()
