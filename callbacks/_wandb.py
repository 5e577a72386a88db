"""Logging one probed epoch: scalars against ``epoch`` to any logger; for dynamics on W&B also a
table and a figure."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
from lightning.pytorch.loggers import Logger, WandbLogger

from attnconv_pl.analyses.base import AnalysisResult
from attnconv_pl.io.wandb_run import EPOCH_AXIS, metric_key, plot_against_epochs
from attnconv_pl.reports.diagrams import persistence_figure


def log_epoch_values(logger: Logger, prefix: str, result: AnalysisResult, step: int) -> None:
    """Send one epoch's finite numbers to ``logger`` as ``<prefix>/<layer>/<metric>``, with
    ``epoch``; a W&B logger's run plots every ``<prefix>/*`` series against ``epoch``."""
    if isinstance(logger, WandbLogger):
        plot_against_epochs(logger.experiment, prefix)
    metrics = {metric_key(layer, metric, prefix): value
               for (layer, metric), value in result.values.items() if not math.isnan(value)}
    logger.log_metrics({EPOCH_AXIS: result.epoch, **metrics}, step=step)


def log_to_wandb(run: Any, result: AnalysisResult, layers: Sequence[str]) -> None:
    """Log ``result`` to the W&B ``run``: every finite number under ``dynamics/<layer>/<metric>``
    with ``epoch`` (:data:`~attnconv_pl.io.wandb_run.EPOCH_AXIS`, completed epochs, the axis of
    the training and validation metrics too) as its step metric (``define_metric``, so
    epoch-indexed points are never dropped whatever the trainer's step), a ``dynamics/table`` of
    all numbers and, when diagrams were computed, a ``dynamics/persistence`` figure."""
    import wandb

    plot_against_epochs(run, "dynamics")
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
