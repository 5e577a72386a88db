"""The callback base of analyses that need the network itself at a probed epoch (Jacobians,
readouts fitted on features), not stored activations: they run through the same
:meth:`~attnconv_pl.analyses.base.Analysis.probe_checkpoint` as ``probe.py``, so the numbers
logged during training and those computed later from the epoch's checkpoint are one code path.

The base owns the schedule (epoch 0, every ``every_n_epochs`` and the last), the input sets
(drawn by the analysis's ``seed`` from the un-augmented splits, exactly as ``probe.py`` draws
them), the analysis's rows of ``dynamics.csv`` (rows of other analyses in the file are kept),
the loggers and resume. A subclass names its analysis and its prefix.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from attnconv_pl.analyses.base import Analysis, CheckpointInputs, LabelledInputs
from attnconv_pl.errors import ConfigError
from attnconv_pl.io.console import say
from attnconv_pl.io.epoch_table import DYNAMICS_FILE, drop_epochs_after, write_epochs
from attnconv_pl.offline.data_choice import load_probe_set
from callbacks._wandb import log_epoch_values


class ModelProbing(Callback):
    """Run an analysis on the network at every scheduled epoch; numbers to ``dynamics.csv`` and
    the loggers.

    At initialisation (epoch 0), after every ``every_n_epochs`` training epochs and after the
    last one, rank zero runs the analysis on the network in eval mode under the trainer's
    precision (the other ranks go on to the next collective and wait there), writes its rows
    and logs them as ``<prefix>/<layer>/<metric>`` against ``epoch``; training waits for it, so
    keep these analyses cheap or their schedule sparse. The run-level row ``<prefix>_seconds``
    is the time it took.

    Register it before ``EpochCheckpoint``: an epoch's rows are then written before its
    checkpoint, so a resume at epoch N finds every row up to N; rows of later epochs (the
    abandoned continuation's) are dropped. Nothing else is stored.

    Args:
        enabled: ``False`` turns the callback into a no-op.
        settings: the analysis's settings; they must have the fields ``every_n_epochs``,
            ``seed`` and ``batch_size`` and the method ``is_scheduled(epoch, max_epochs)``.
    """

    prefix: ClassVar[str]
    """The section name: W&B keys ``<prefix>/...``, messages ``<prefix>: ...``."""
    analysis_type: ClassVar[type[Analysis]]

    def __init__(self, enabled: bool, settings: Any) -> None:
        self.enabled = enabled
        self.settings = settings
        self.analysis: Optional[Analysis] = None
        self._input_sets: dict[tuple[str, int], LabelledInputs] = {}
        self._datamodule: Any = None

    @property
    def cost_metric(self) -> str:
        return f"{self.prefix}_seconds"

    def owns(self, metric: str) -> bool:
        """Whether rows of ``metric`` in ``dynamics.csv`` are this callback's."""
        return metric == self.cost_metric or self.analysis_type.family_of(metric) is not None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Build the analysis for the network.

        Raises:
            ConfigError: the network lacks what the analysis needs (the message says what).
        """
        if stage != "fit" or not self.enabled:
            return
        try:
            self.analysis = self.analysis_type.for_model(self.settings, pl_module.model)
        except ValueError as error:
            raise ConfigError(f"{self.prefix}: {error} (or turn it off: --{self.prefix}.enabled false)") from error
        self._datamodule = trainer.datamodule

    def _inputs(self, split: str, size: int) -> LabelledInputs:
        """Up to ``size`` inputs of the un-augmented ``split``, drawn by the analysis's seed
        exactly as ``probe.py`` draws them."""
        if (split, size) not in self._input_sets:
            self._input_sets[(split, size)] = load_probe_set(self._datamodule, split, size, self.settings.seed,
                                                             own_data=True)
        return self._input_sets[(split, size)]

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Drop this analysis's rows of later epochs; probe the start epoch when it is
        scheduled (epoch 0 of a fresh run; on a resume its rows were written before its checkpoint)."""
        if not self.enabled:
            return
        epoch = trainer.current_epoch
        resumed = trainer.ckpt_path is not None
        if trainer.is_global_zero:
            drop_epochs_after(Path(trainer.default_root_dir) / DYNAMICS_FILE, epoch if resumed else -1, owns=self.owns)
        if not resumed and self.settings.is_scheduled(epoch, trainer.max_epochs):
            self._probe(trainer, pl_module, epoch)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.enabled and self.settings.is_scheduled(epoch, trainer.max_epochs):
            self._probe(trainer, pl_module, epoch)

    def _probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        """Run the analysis at ``epoch`` on rank zero; write and log its numbers."""
        if not trainer.is_global_zero:
            return
        started = time.perf_counter()
        network = pl_module.model
        was_training = network.training
        network.eval()
        try:
            result = self.analysis.probe_checkpoint(CheckpointInputs(
                epoch=epoch, model=network, device=pl_module.device,
                autocast=trainer.precision_plugin.forward_context, seed=self.settings.seed,
                batch_size=self.settings.batch_size, max_epochs=trainer.max_epochs, inputs=self._inputs))
        finally:
            network.train(was_training)
        seconds = time.perf_counter() - started
        result.values[("", self.cost_metric)] = seconds
        write_epochs(Path(trainer.default_root_dir) / DYNAMICS_FILE, result.rows(), owns=self.owns)
        for logger in trainer.loggers:
            log_epoch_values(logger, self.prefix, result, trainer.global_step)
        say(trainer, f"{self.prefix}: epoch {epoch} probed in {seconds:.2f} s")
