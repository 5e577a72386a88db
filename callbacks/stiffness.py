"""Stiffness of a residual network's blocks during training."""

from __future__ import annotations

from typing import Any

from attnconv_pl.analyses.stiffness import Stiffness, StiffnessSettings
from callbacks._model_probing import ModelProbing
from callbacks._settings import options_from


@options_from(StiffnessSettings, enabled=False)
class StiffnessProbing(ModelProbing):
    """Channel-rate and Jacobian stiffness and the gates of every residual block
    (:class:`attnconv_pl.analyses.stiffness.Stiffness`) at every probed epoch; off by default
    (``--stiffness.enabled true``; the stiffness configs turn it on).

    Args:
        enabled: run it (``--stiffness.enabled true``); off by default.
        **settings: the fields of :class:`attnconv_pl.analyses.stiffness.StiffnessSettings`
            (listed below), each a key of the ``stiffness:`` config section.
    """

    prefix = "stiffness"
    analysis_type = Stiffness

    def __init__(self, enabled: bool = False, **settings: Any) -> None:
        super().__init__(enabled, StiffnessSettings(**settings))
