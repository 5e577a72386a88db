"""Per-epoch activation snapshots of chosen layers and their dynamics, logged live."""

from __future__ import annotations

from typing import Any, Optional

from lightning.pytorch.loggers import Logger, WandbLogger
from typing_extensions import override

from attnconv_pl.analyses.base import AnalysisResult
from attnconv_pl.analyses.dynamics import Dynamics, DynamicsSettings
from attnconv_pl.capture import Activations
from callbacks._probing import ProbingCallback
from callbacks._settings import options_from
from callbacks._wandb import log_to_wandb


@options_from(DynamicsSettings)
class FeatureDynamics(ProbingCallback):
    """Snapshot chosen layers on a fixed probe set each probed epoch and log their dynamics.

    The probing base (:class:`callbacks._probing.ProbingCallback`) captures, stores and
    schedules; every number comes from :class:`attnconv_pl.analyses.dynamics.Dynamics`
    (variance, intrinsic dimension, drift, stability, topology), which remembers the previous
    probed epoch and epoch 0 for drift. Numbers go to ``dynamics.csv``, W&B
    (``dynamics/<layer>/<metric>`` against ``epoch``, a table and the persistence diagrams) and
    any other logger.

    Args:
        enabled: ``False`` turns the callback into a no-op (``--dynamics.enabled false``).
        **settings: the fields of :class:`attnconv_pl.analyses.dynamics.DynamicsSettings`
            (listed below), each a key of the ``dynamics:`` config section.
    """

    prefix = "dynamics"

    def __init__(self, enabled: bool = True, **settings: Any) -> None:
        super().__init__(enabled, DynamicsSettings(**settings))

    @override
    def make_analysis(self, layers: list[str]) -> Dynamics:
        return Dynamics(self.settings, layers, pool=self.pool)

    @override
    def analyse(self, epoch: int, snapshot: Activations) -> AnalysisResult:
        return self.analysis.run(epoch, snapshot, topology=self.settings.with_topology(epoch, self.max_epochs))

    @override
    def restore(self, previous: Optional[Activations], initial: Optional[Activations]) -> None:
        self.analysis.restore(previous, initial)

    @override
    def log_to(self, logger: Logger, result: AnalysisResult, step: int) -> None:
        """W&B: the scalars against ``epoch``, a table and the persistence figure; others: the scalars."""
        if isinstance(logger, WandbLogger):
            log_to_wandb(logger.experiment, result, self.layers)
        else:
            super().log_to(logger, result, step)
