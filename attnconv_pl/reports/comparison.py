"""The comparison figure of arXiv 2410.17628: compactness and stability of each model, side by side.

Panels: total variance, intrinsic dimension (each estimator) and the input-to-output diagram
distances W1, W2 and W_inf (bottleneck) per homology dimension, each against depth at every
run's last probed epoch. Runs of one group (same model and dataset, different seeds) are
summarised by their mean and an error bar of one sample standard deviation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from attnconv_pl.reports.layout import set_margins
from attnconv_pl.reports.records import (
    ProbedRun,
    layer_positions,
    metric_title,
    metric_unit,
    runs_by_group,
    shared_layers,
)

STABILITY_DISTANCES = ("w1", "w2", "bottleneck")


def comparison_rows(runs: list[ProbedRun]) -> list[list[str]]:
    """The metrics of the comparison that the runs have, one figure row each: compactness
    (``variance``, ``id_<method>``), then ``stability_h<d>_{w1,w2,bottleneck}`` per dimension d."""
    present = list(dict.fromkeys(metric for run in runs for metric in run.layer_metrics()))
    compactness = [m for m in present if m == "variance"] + [m for m in present if m.startswith("id_")]
    dims = sorted({int(m.group(1)) for m in map(re.compile(r"^stability_h(\d+)_").match, present) if m})
    stability = [[f"stability_h{d}_{distance}" for distance in STABILITY_DISTANCES
                  if f"stability_h{d}_{distance}" in present] for d in dims]
    return [row for row in [compactness, *stability] if row]


def comparison_metrics(runs: list[ProbedRun]) -> list[str]:
    """The metrics of the comparison figure, in reading order (see :func:`comparison_rows`)."""
    return [metric for row in comparison_rows(runs) for metric in row]


@dataclass(frozen=True)
class GroupStatistics:
    """One group's metric against depth at the last epoch.

    Attributes:
        group: the group's label.
        layers: its layers in depth order (those of its first run).
        mean: (L,) mean over the group's runs (NaN where no run has a finite value).
        std: (L,) sample standard deviation (ddof=1) over the runs with a finite value;
            0 where fewer than two have one.
        runs: number of runs (seeds) in the group.
    """

    group: str
    layers: list[str]
    mean: np.ndarray
    std: np.ndarray
    runs: int


def seed_statistics(runs: list[ProbedRun], metric: str) -> list[GroupStatistics]:
    """Mean and spread over seeds of ``metric`` at each run's last epoch, per group, in the
    order the groups first appear."""
    statistics = []
    for group, members in runs_by_group(runs).items():
        layers = members[0].layers
        values = np.array([[run.value(run.last_epoch, layer, metric) for layer in layers] for run in members])
        mean, std = mean_and_std(values)
        statistics.append(GroupStatistics(group, list(layers), mean, std, len(members)))
    return statistics


def mean_and_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and sample standard deviations (ddof=1) of ``values`` (R runs, K) over the
    finite entries: mean NaN where a column has none, std 0 where it has fewer than two."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=0)
    sums = np.where(finite, values, 0.0).sum(axis=0)
    mean = np.divide(sums, counts, out=np.full(values.shape[1], math.nan), where=counts > 0)
    squares = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=0)
    std = np.divide(squares, counts - 1, out=np.zeros(values.shape[1]), where=counts > 1) ** 0.5
    return mean, std


def use_log_scale(values: np.ndarray) -> bool:
    """Whether values spread over more than two decades (all positive): then a log axis."""
    finite = values[np.isfinite(values)]
    return bool(len(finite)) and bool(finite.min() > 0) and finite.max() / finite.min() > 100


def comparison_figure(runs: list[ProbedRun]) -> Figure:
    """The side-by-side comparison of the runs' groups (see the module docstring)."""
    rows = comparison_rows(runs) or [[]]
    shared = shared_layers(runs)
    columns = max(1, max(len(row) for row in rows))
    figure = Figure(figsize=(4.4 * columns, 3.1 * len(rows) + 0.9))
    axes = figure.subplots(len(rows), columns, squeeze=False)
    for row_axes, metrics in zip(axes, rows):
        for axis in row_axes[len(metrics):]:
            axis.set_visible(False)
        for axis, metric in zip(row_axes, metrics):
            _draw_metric(axis, seed_statistics(runs, metric), shared)
            axis.set_title(metric_title(metric), fontsize=10)
            axis.set_ylabel(metric_unit(metric) or metric, fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.3 / figure.get_figheight()),
                      ncol=min(4, len(labels)), fontsize=9, frameon=False)
    figure.suptitle("Compactness and stability at the last epoch (mean ± sd over seeds; diagram distances: "
                    "gudhi Wasserstein, Euclidean ground metric)", fontsize=10)
    set_margins(figure, top=0.95, bottom=0.8 if shared else 0.55, hspace=1.0 if shared else 0.7)
    return figure


def _draw_metric(axis, statistics: list[GroupStatistics], shared: list[str] | None) -> None:
    """One panel: each group's mean against depth, error bars when it has several seeds,
    groups shifted slightly apart so their bars do not overlap."""
    spacing = 1.0 if shared else 1.0 / max(1, max(len(s.layers) for s in statistics) - 1)
    for index, stats in enumerate(statistics):
        offset = (index - (len(statistics) - 1) / 2) * 0.08 * spacing
        x = layer_positions(stats.layers, shared is not None) + offset
        label = f"{stats.group} ({stats.runs} seed{'s' if stats.runs > 1 else ''})"
        axis.errorbar(x, stats.mean, yerr=stats.std if stats.runs > 1 else None, marker="o", markersize=4,
                      capsize=3, linewidth=1.2, label=label)
    if use_log_scale(np.concatenate([s.mean for s in statistics])):
        axis.set_yscale("log")
    if shared:
        axis.set_xticks(range(len(shared)), shared, rotation=45, ha="right", fontsize=8)
    else:
        axis.set_xlabel("relative depth", fontsize=8)
    axis.tick_params(labelsize=8)
    axis.grid(alpha=0.3)
