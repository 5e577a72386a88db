"""The training callbacks of analyses that need the network itself at a probed epoch (Jacobians,
readouts fitted on features, attacks), not stored activations: one per registered analysis that
runs on checkpoints (:func:`model_probing_callbacks`), made from its settings dataclass, so a new
analysis needs no callback of its own. They run through the run's probing session and the same
:meth:`~attnconv_pl.analyses.base.Analysis.probe_checkpoint` as ``probe.py``, so the numbers logged
during training and those computed later from the epoch's checkpoint are one code path.

The base owns the schedule (epoch 0, every ``every_n_epochs`` and the last), the analysis's rows
of ``dynamics.csv`` (rows of other analyses in the file are kept), the loggers and resume; the
session owns the input sets (drawn by the seed from the un-augmented splits, exactly as
``probe.py`` draws them), the device and the precision.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Optional

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from attnconv_pl.analyses import Analysis, list_analyses, load_analysis
from attnconv_pl.analyses.base import is_scheduled_epoch
from attnconv_pl.errors import ConfigError
from attnconv_pl.io.console import say
from attnconv_pl.io.epoch_table import DYNAMICS_FILE, drop_epochs_after, write_epochs
from attnconv_pl.offline.checkpoints import epoch_checkpoints, first_sentence, read_checkpoint
from callbacks._settings import options_from
from callbacks._wandb import log_epoch_values
from callbacks.probing_session import forget_default_session, session_of


class ModelProbing(Callback):
    """Run an analysis on the network at every scheduled epoch; numbers to ``dynamics.csv`` and
    the loggers.

    At initialisation (epoch 0), after every ``every_n_epochs`` training epochs (1 when the
    settings have none) and after the last one, rank zero runs the analysis on the network in eval
    mode (the other ranks go on to the next collective and wait there), writes its rows and logs
    them as ``<prefix>/<layer>/<metric>`` against ``epoch``; training waits for it, so keep these
    analyses cheap or their schedule sparse. The run-level row ``<prefix>_seconds`` is the time it
    took.

    Register it before ``EpochCheckpoint``: an epoch's rows are then written before its
    checkpoint, so a resume at epoch N finds every row up to N; rows of later epochs (the
    abandoned continuation's) are dropped. Nothing else is stored: at the first probe of a
    resumed launch the analysis is offered the run's ``epoch=NNN.ckpt`` of the earlier epochs it
    probed (``CheckpointInputs.earlier_epochs`` and ``weights_of``), as ``probe.py`` offers them, so
    an analysis that compares with earlier epochs (similarity's ``cka_first``) finds them again.

    Args:
        enabled: ``False`` turns the callback into a no-op.
        settings: the analysis's settings.
    """

    prefix: ClassVar[str]
    """The analysis's name: its config section, W&B keys ``<prefix>/...``, messages ``<prefix>: ...``."""
    analysis_type: ClassVar[type[Analysis]]

    def __init__(self, enabled: bool, settings: Any) -> None:
        self.enabled = enabled
        self.settings = settings
        self.analysis: Optional[Analysis] = None
        self._resumed = False  # until the first probe of a resumed launch

    @property
    def cost_metric(self) -> str:
        return f"{self.prefix}_seconds"

    def owns(self, metric: str) -> bool:
        """Whether rows of ``metric`` in ``dynamics.csv`` are this callback's."""
        return metric == self.cost_metric or self.analysis_type.family_of(metric) is not None

    def is_scheduled(self, epoch: int, max_epochs: Optional[int]) -> bool:
        """Whether ``epoch`` (completed epochs) is probed: 0, every ``every_n_epochs``-th, the last."""
        return is_scheduled_epoch(epoch, getattr(self.settings, "every_n_epochs", 1), max_epochs)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Build the analysis for the network, through the run's probing session.

        Raises:
            ConfigError: the network lacks what the analysis needs (the message says what).
        """
        if stage != "fit" or not self.enabled:
            return
        try:
            self.analysis = session_of(trainer, pl_module).build(self.prefix, self.settings, pl_module.model)
        except ValueError as error:
            raise ConfigError(f"{self.prefix}: {error} (or turn it off: --{self.prefix}.enabled false)") from error

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        forget_default_session(trainer)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Drop this analysis's rows of later epochs; probe the start epoch when it is
        scheduled (epoch 0 of a fresh run; on a resume its rows were written before its checkpoint)."""
        if not self.enabled:
            return
        epoch = trainer.current_epoch
        resumed = self._resumed = trainer.ckpt_path is not None
        if trainer.is_global_zero:
            drop_epochs_after(Path(trainer.default_root_dir) / DYNAMICS_FILE, epoch if resumed else -1, owns=self.owns)
        if not resumed and self.is_scheduled(epoch, trainer.max_epochs):
            self._probe(trainer, pl_module, epoch)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.enabled and self.is_scheduled(epoch, trainer.max_epochs):
            self._probe(trainer, pl_module, epoch)

    def _probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        """Run the analysis at ``epoch`` on rank zero; write and log its numbers."""
        if not trainer.is_global_zero:
            return
        started = time.perf_counter()
        network = pl_module.model
        was_training = network.training
        network.eval()
        earlier: dict[int, Path] = {}
        if self._resumed:  # the analysis's references to earlier epochs are gone: offer their checkpoints
            earlier = {e: path for e, path in epoch_checkpoints(Path(trainer.default_root_dir)).items()
                       if e < epoch and self.is_scheduled(e, trainer.max_epochs)}  # the epochs it probed
            self._resumed = False
        try:
            result = session_of(trainer, pl_module).run(
                epoch, network, {self.prefix: self.analysis}, earlier_epochs=tuple(earlier),
                weights_of=(lambda reference: weights_of(pl_module, earlier[reference])) if earlier else None
            ).results[self.prefix]
        finally:
            network.train(was_training)
        seconds = time.perf_counter() - started
        result.values[("", self.cost_metric)] = seconds
        write_epochs(Path(trainer.default_root_dir) / DYNAMICS_FILE, result.rows(), owns=self.owns)
        for logger in trainer.loggers:
            log_epoch_values(logger, self.prefix, result, trainer.global_step)
        say(trainer, f"{self.prefix}: epoch {epoch} probed in {seconds:.2f} s")


@contextmanager
def weights_of(pl_module: pl.LightningModule, checkpoint: Path) -> Iterator[None]:
    """``pl_module`` holds the weights of ``checkpoint`` (an ``epoch=NNN.ckpt`` of the run) inside
    the block, its own again after it.

    Raises:
        ConfigError: the checkpoint cannot be read or does not fit the model.
    """
    weights = read_checkpoint(checkpoint)["state_dict"]
    own = {name: tensor.detach().clone() for name, tensor in pl_module.state_dict().items()}
    try:
        pl_module.load_state_dict(weights)
    except RuntimeError as error:
        pl_module.load_state_dict(own)
        raise ConfigError(f"{checkpoint} does not fit the model ({first_sentence(error)}); put back the run's own "
                          "checkpoint or start a new run") from error
    try:
        yield
    finally:
        pl_module.load_state_dict(own)


@functools.cache
def model_probing_callback(name: str) -> type[ModelProbing]:
    """The training callback of analysis ``name`` (``SingleNodeProbing`` for ``single_node``): a
    :class:`ModelProbing` whose options are ``enabled`` (off by default) and the fields of the
    analysis's settings dataclass."""
    analysis_type = load_analysis(name)
    settings_type = analysis_type.settings_type

    def __init__(self, enabled: bool = False, **settings: Any) -> None:
        ModelProbing.__init__(self, enabled, settings_type(**settings))

    cls = type("".join(part.title() for part in name.split("_")) + "Probing", (ModelProbing,), {
        "__init__": __init__, "prefix": name, "analysis_type": analysis_type, "__module__": __name__,
        "__doc__": f"Run the {name} analysis (:class:`{analysis_type.__module__}.{analysis_type.__name__}`) on the "
                   f"network at its scheduled epochs during training; off by default "
                   f"(``--{name}.enabled true``).\n\nArgs:\n    enabled: run it (``--{name}.enabled true``).\n"})
    return options_from(settings_type, enabled=False)(cls)


def model_probing_callbacks() -> dict[str, type[ModelProbing]]:
    """The training callback of every registered analysis that runs on the network
    (``probe_checkpoint``) and during training (``runs_live``), by analysis name, in registry order."""
    return {name: model_probing_callback(name) for name in list_analyses()
            if load_analysis(name).runs_live and load_analysis(name).probe_checkpoint is not Analysis.probe_checkpoint}
