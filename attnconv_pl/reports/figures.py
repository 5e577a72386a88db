"""The figures every analysis's metrics get in a probe report (each metric against depth and
against epoch) and how figures are grouped into sections; each saved as a PNG. An analysis's
own figures are drawn by its section module (``reports/sections/<analysis>.py``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from attnconv_pl.atomic import atomic_path
from attnconv_pl.reports.comparison import use_log_scale
from attnconv_pl.reports.layout import legend_below, set_margins
from attnconv_pl.reports.records import ProbedRun, layer_positions, metric_section, metric_title, shared_layers

DPI = 80
"""Resolution of the saved PNGs: enough to read on screen, small enough to embed dozens."""
PANEL_COLUMNS = 4


@dataclass(frozen=True)
class ReportFigure:
    """A figure of the report.

    Attributes:
        name: file name without ``.png`` (in the report's ``figures/`` folder).
        section: the key of its report section: a metric family's (see ``metric_families()``),
            ``other``, or one an analysis's section module draws (``comparison``, ...).
        caption: what the figure shows.
        metric: the metric it plots ("" for figures of no single metric).
    """

    name: str
    section: str
    caption: str
    metric: str = ""

    @property
    def file_name(self) -> str:
        return f"{self.name}.png"


def file_stem(text: str) -> str:
    """``text`` as a safe file-name part: letters, digits, ``.``, ``-``, ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def depth_figure(runs: list[ProbedRun], metric: str) -> Figure:
    """``metric`` against depth (the layers with that metric, in order) at each run's last epoch,
    one line per run; x is the layer when all runs share those layers, else the relative depth."""
    shared = shared_layers(runs, metric)
    figure = Figure(figsize=(4.4, 3.1))
    axis = figure.subplots()
    values = []
    for run in runs:
        layers = run.metric_layers(metric)
        y = np.array([run.value(run.last_epoch, layer, metric) for layer in layers])
        values.append(y)
        axis.plot(layer_positions(layers, shared is not None), y, marker="o", markersize=4,
                  label=f"{run.label} (epoch {run.last_epoch})")
    if use_log_scale(np.concatenate(values)):
        axis.set_yscale("log")
    if shared:
        axis.set_xticks(range(len(shared)), shared, rotation=45, ha="right", fontsize=8)
    else:
        axis.set_xlabel("relative depth")
    axis.set_title(f"{metric_title(metric)} by depth, last epoch", fontsize=10)
    axis.grid(alpha=0.3)
    legend = legend_below(figure, *axis.get_legend_handles_labels(), fontsize=7)
    set_margins(figure, bottom=(0.85 if shared else 0.55) + legend, top=0.35)
    return figure


def epoch_figure(runs: list[ProbedRun], metric: str) -> Figure:
    """``metric`` against epoch, one panel per layer with that metric (all runs' such layers, in
    depth order), one line per run."""
    layers = list(dict.fromkeys(layer for run in runs for layer in run.metric_layers(metric)))
    columns = min(PANEL_COLUMNS, len(layers))
    rows = math.ceil(len(layers) / columns)
    figure = Figure(figsize=(2.3 * columns, 2.0 * rows + 1.0))
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True)
    for axis, layer in zip(axes.flat, layers):
        for index, run in enumerate(runs):
            epochs, values = run.series(layer, metric)
            axis.plot(epochs, values, marker="o", markersize=3, color=f"C{index}", label=run.label)
        axis.set_title(layer, fontsize=9)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(layers):]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("epoch", fontsize=8)
    entries = {label: handle for axis in axes.flat for handle, label in zip(*axis.get_legend_handles_labels())}
    legend = legend_below(figure, list(entries.values()), list(entries))
    figure.suptitle(f"{metric_title(metric)} over training", fontsize=10)
    set_margins(figure, left=0.55, bottom=0.5 + legend, top=0.5, wspace=0.5, hspace=0.45)
    return figure


def metric_figures(runs: list[ProbedRun], metrics: list[str]) -> Iterator[tuple[ReportFigure, Figure]]:
    """Each of ``metrics`` against depth (last epoch) and against epoch (per layer), in its
    report section (:func:`~attnconv_pl.reports.records.metric_section`)."""
    for metric in metrics:
        section, title = metric_section(metric), metric_title(metric)
        yield (ReportFigure(f"depth_{metric}", section, f"{title} ({metric}) against depth at the last epoch.",
                            metric), depth_figure(runs, metric))
        yield (ReportFigure(f"epochs_{metric}", section, f"{title} ({metric}) against epoch, per layer.", metric),
               epoch_figure(runs, metric))


@dataclass(frozen=True)
class ReportSection:
    """A section of the report: its anchor key, title and figures grouped by metric
    (figures of no metric under "")."""

    key: str
    title: str
    figures_by_metric: dict[str, list[ReportFigure]]


def report_sections(figures: list[ReportFigure], titles: list[tuple[str, str]]) -> list[ReportSection]:
    """The sections ``titles`` (``(key, title)`` in order) that hold any of ``figures``."""
    sections = []
    for key, title in titles:
        grouped: dict[str, list[ReportFigure]] = {}
        for figure in figures:
            if figure.section == key:
                grouped.setdefault(figure.metric, []).append(figure)
        if grouped:
            sections.append(ReportSection(key, title, grouped))
    return sections


def save_figure(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG at :data:`DPI`, atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=DPI, format="png")
