"""Checkpoints named by the number of completed training epochs, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from attnconv_pl.analyses.base import is_scheduled_epoch
from attnconv_pl.io.console import say


def checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint of the model after ``epoch`` training epochs (0 = at init)."""
    return f"epoch={epoch:03d}.ckpt"


class EpochCheckpoint(Callback):
    """Save ``<run_dir>/checkpoints/epoch=NNN.ckpt`` and ``last.ckpt``.

    ``epoch=000.ckpt`` is the model at initialisation (saved before the first step), and
    ``epoch=NNN.ckpt`` the model after NNN completed training epochs, the same numbering as
    ``dynamics.csv`` and the snapshots. Lightning's ``ModelCheckpoint`` names files by the 0-based
    index of the epoch in progress, hence this callback. ``last.ckpt`` is rewritten after every
    epoch, so a killed run loses at most the epoch in progress; resume with ``--ckpt_path``.

    Args:
        every_n_epochs: keep a numbered checkpoint every this many epochs (the last epoch and
            epoch 0 always); ``last.ckpt`` is written every epoch regardless.
        save_init: write ``epoch=000.ckpt`` before the first training step.
        dirpath: where to write; default ``<trainer.default_root_dir>/checkpoints``.
    """

    def __init__(self, every_n_epochs: int = 1, save_init: bool = True, dirpath: Optional[str] = None) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.save_init = save_init
        self.dirpath = dirpath

    def checkpoint_dir(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "checkpoints"

    def _save(self, trainer: pl.Trainer, name: str) -> Path:
        """Save on every rank's call (Lightning writes on rank zero), then rename into place."""
        final = self.checkpoint_dir(trainer) / name
        partial = final.with_name(final.name + ".partial")
        try:
            trainer.save_checkpoint(partial, weights_only=False)  # the whole training state, to resume
        except BaseException:
            if trainer.is_global_zero:  # a full disk leaves no partial file
                partial.unlink(missing_ok=True)
            raise
        if trainer.is_global_zero:
            os.replace(partial, final)
        trainer.strategy.barrier("epoch_checkpoint")
        return final

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        init_exists = (self.checkpoint_dir(trainer) / checkpoint_name(0)).exists()
        init_exists = trainer.strategy.broadcast(init_exists)  # every rank takes the same branch
        if self.save_init and trainer.global_step == 0 and not init_exists:
            self._save(trainer, checkpoint_name(0))

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if is_scheduled_epoch(epoch, self.every_n_epochs, trainer.max_epochs):
            saved = self._save(trainer, checkpoint_name(epoch))
            say(trainer, f"checkpoint: {saved}")  # on its own line, not after the progress bar
        self._save(trainer, "last.ckpt")
