"""``<run_dir>/metrics.csv``: the epoch means of the training and validation metrics, and their
epoch, counted in completed epochs, in the loggers too."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from typing_extensions import override

from attnconv_pl.analyses.training_records import COLUMNS, LOGGED_NAMES, METRICS_FILE
from attnconv_pl.io.epoch_table import drop_epochs_after, write_epochs
from attnconv_pl.io.wandb_run import EPOCH_AXIS, define_epoch_axis


def epoch_mean(metrics: Mapping[str, Any], name: str) -> float:
    """The epoch mean of a logged metric: ``<name>_epoch`` when it was logged per step too,
    else ``<name>``; NaN when absent."""
    value = metrics.get(f"{name}_epoch", metrics.get(name))
    return math.nan if value is None else float(value)


class EpochMetrics(Callback):
    """Write one row per completed training epoch to ``<trainer.default_root_dir>/metrics.csv``.

    Columns (``attnconv_pl.analyses.training_records.COLUMNS``): ``epoch`` (completed epochs, 1..max_epochs,
    as the checkpoints), ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``,
    ``val_acc_top5`` (epoch means from ``trainer.callback_metrics``; ``val_*`` NaN in an epoch
    without validation) and ``epoch_seconds``; then the module's own columns, when it has a
    ``metrics_columns`` mapping ``{column: logged name}`` (e.g. the certificate of
    :class:`attnconv_pl.heads.HeadModule`; NaN in an epoch that did not log one). Under DDP each
    value is averaged over the processes (metrics already synchronised stay as they are) and
    global rank zero writes.

    The loggers get the same epoch axis: ``epoch`` (:data:`attnconv_pl.io.wandb_run.EPOCH_AXIS`,
    completed epochs, as ``metrics.csv`` and ``dynamics.csv``) is logged with the epoch-level
    training and validation metrics, where Lightning would put the 0-based index of the epoch;
    a W&B run plots them against it (:func:`attnconv_pl.io.wandb_run.define_epoch_axis`). Rows
    logged during an epoch keep Lightning's ``epoch``, the epochs completed before it.

    The row of an epoch is written before that epoch's checkpoints (register this callback
    before ``EpochCheckpoint``), atomically, replacing a row of the same epoch; at the start of
    training, rows of epochs after the checkpoint resumed from are dropped. So after any
    resume the file holds each epoch once, from the run that led to the current weights.
    """

    def __init__(self) -> None:
        self._epoch_started: Optional[float] = None
        self._validated_epoch: Optional[int] = None

    @staticmethod
    def path(trainer: pl.Trainer) -> Path:
        return Path(trainer.default_root_dir) / METRICS_FILE

    @staticmethod
    def module_columns(pl_module: pl.LightningModule) -> dict[str, str]:
        """The module's own columns, ``{column: logged name}`` (none unless it says)."""
        return dict(getattr(pl_module, "metrics_columns", None) or {})

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            columns = (*COLUMNS, *self.module_columns(pl_module))
            drop_epochs_after(self.path(trainer), trainer.current_epoch, columns=columns)
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    define_epoch_axis(logger.experiment)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    @staticmethod
    def log_completed_epochs(trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Log ``epoch`` = the epochs completed at the end of this one with the epoch-level metrics."""
        pl_module.log(EPOCH_AXIS, float(trainer.current_epoch + 1), on_step=False, on_epoch=True, sync_dist=True)

    @override
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.log_completed_epochs(trainer, pl_module)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.log_completed_epochs(trainer, pl_module)
        metrics = trainer.callback_metrics
        validated = self._validated_epoch == trainer.current_epoch
        values = [epoch_mean(metrics, name) if validated or not column.startswith("val_") else math.nan
                  for column, name in LOGGED_NAMES.items()]
        values.append(time.perf_counter() - self._epoch_started if self._epoch_started is not None else math.nan)
        extra = self.module_columns(pl_module)
        values += [epoch_mean(metrics, name) for name in extra.values()]
        averaged = trainer.strategy.reduce(torch.tensor(values, dtype=torch.float64, device=pl_module.device),
                                           reduce_op="mean")
        if trainer.is_global_zero:
            write_epochs(self.path(trainer), [(trainer.current_epoch + 1, *averaged.tolist())],
                         columns=(*COLUMNS, *extra))
