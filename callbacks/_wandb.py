"""Logging one probed epoch to a W&B run: scalars against ``epoch``, a table, a figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt

from attnconv_pl.analyses.base import AnalysisResult
from attnconv_pl.io.wandb_run import EPOCH_AXIS, metric_key
from attnconv_pl.reports.diagrams import persistence_figure


def log_to_wandb(run: Any, result: AnalysisResult, layers: Sequence[str]) -> None:
    """Log ``result`` to the W&B ``run``: every finite number under :func:`~attnconv_pl.io.wandb_run.metric_key` with
    ``epoch`` (:data:`attnconv_pl.io.wandb_run.EPOCH_AXIS`, completed epochs, the axis of the
    training and validation metrics too) as its step metric (``define_metric``, so
    epoch-indexed points are never dropped whatever the trainer's step), a ``dynamics/table`` of
    all numbers and, when diagrams were computed, a ``dynamics/persistence`` figure."""
    import wandb

    run.define_metric(EPOCH_AXIS)
    run.define_metric("dynamics/*", step_metric=EPOCH_AXIS)
    payload: dict[str, Any] = {EPOCH_AXIS: result.epoch}
    payload.update({metric_key(layer, metric): value
                    for (layer, metric), value in result.values.items() if not math.isnan(value)})
    payload["dynamics/table"] = wandb.Table(
        columns=["epoch", "layer", "metric", "value"],
        data=[[result.epoch, layer, metric, value] for (layer, metric), value in result.values.items()])
    diagrams = result.artifacts.get("diagrams")
    if diagrams:
        ordered = {layer: diagrams[layer] for layer in layers if layer in diagrams}
        figure = persistence_figure(ordered, f"persistence diagrams, epoch {result.epoch}")
        payload["dynamics/persistence"] = wandb.Image(figure)
        plt.close(figure)
    run.log(payload)
