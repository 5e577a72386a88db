"""A callback that ends the training process abruptly, as a kill would: for resume tests.

Used from the command line: ``--trainer.callbacks+=tests.kill_switch.KillAtEpochStart
--trainer.callbacks.epoch N``.
"""

from __future__ import annotations

import os

from lightning.pytorch.callbacks import Callback


class KillAtEpochStart(Callback):
    """End the process with ``os._exit`` (no cleanup, background threads die with it) when
    training epoch ``epoch`` (0-based) starts, i.e. after every hook of the previous epoch,
    its checkpoints included, has run."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            os._exit(3)
