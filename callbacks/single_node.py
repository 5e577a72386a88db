"""Single-node performance of a transformer's attention and feed-forward nodes during training."""

from __future__ import annotations

from typing import Any

from attnconv_pl.analyses.single_node import SingleNode, SingleNodeSettings
from callbacks._model_probing import ModelProbing
from callbacks._settings import options_from


@options_from(SingleNodeSettings, enabled=False)
class SingleNodeProbing(ModelProbing):
    """Label clusters, ANDC and head specialisation of every attention / feed-forward sub-block
    (:class:`attnconv_pl.analyses.single_node.SingleNode`) at chosen epochs; off by default
    (``--single_node.enabled true``), since each run fits one readout per sub-block.

    Args:
        enabled: run it (``--single_node.enabled true``); off by default.
        **settings: the fields of :class:`attnconv_pl.analyses.single_node.SingleNodeSettings`
            (listed below), each a key of the ``single_node:`` config section.
    """

    prefix = "single_node"
    analysis_type = SingleNode

    def __init__(self, enabled: bool = False, **settings: Any) -> None:
        super().__init__(enabled, SingleNodeSettings(**settings))
