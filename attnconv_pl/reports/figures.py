"""The figures of a probe report: per metric against depth and against epoch, persistence
diagrams per run, the comparison figure and the robustness figure; each saved as a PNG."""

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
from attnconv_pl.reports.comparison import comparison_figure, comparison_metrics, use_log_scale
from attnconv_pl.reports.diagrams import persistence_epochs_figure
from attnconv_pl.reports.layout import legend_below, set_margins
from attnconv_pl.reports.records import (ProbedRun, layer_positions, metric_families, metric_section, metric_title,
                                         report_metrics, shared_layers)
from attnconv_pl.reports.robustness import robustness_figure

DPI = 80
"""Resolution of the saved PNGs: enough to read on screen, small enough to embed dozens."""
PANEL_COLUMNS = 4


@dataclass(frozen=True)
class ReportFigure:
    """A figure of the report.

    Attributes:
        name: file name without ``.png`` (in the report's ``figures/`` folder).
        section: ``comparison``, ``robustness``, ``persistence`` or a metric section key (see
            ``metric_families()``).
        caption: what the figure shows.
        metric: the metric it plots ("" for the comparison, robustness and persistence figures).
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
    """``metric`` against depth (probed layers in order) at each run's last epoch, one line per
    run; x is the layer when all runs share their layers, else the relative depth."""
    shared = shared_layers(runs)
    figure = Figure(figsize=(4.4, 3.1))
    axis = figure.subplots()
    values = []
    for run in runs:
        y = np.array([run.value(run.last_epoch, layer, metric) for layer in run.layers])
        values.append(y)
        axis.plot(layer_positions(run.layers, shared is not None), y, marker="o", markersize=4,
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
    """``metric`` against epoch, one panel per layer (all runs' layers, in depth order), one
    line per run."""
    layers = list(dict.fromkeys(layer for run in runs for layer in run.layers))
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


def report_figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """Every figure of the report, comparison first (when dynamics were probed; then robustness
    when evaluated), built one at a time."""
    if comparison_metrics(runs):
        yield ReportFigure("comparison", "comparison",
                           "Compactness (variance, intrinsic dimension) and stability (input-to-output diagram "
                           "distances W1, W2, W∞) against depth at the last epoch, per model; error bars: one "
                           "standard deviation over seeds."), comparison_figure(runs)
    if any(run.final_robustness() is not None for run in runs):
        yield ReportFigure("robustness", "robustness",
                           "Accuracy under additive Gaussian noise on the normalised inputs against its standard "
                           "deviation σ, at each run's last probed epoch, per model; error bars: one standard "
                           "deviation over seeds."), robustness_figure(runs)
    for metric in report_metrics(runs):
        section, title = metric_section(metric), metric_title(metric)
        yield (ReportFigure(f"depth_{metric}", section, f"{title} ({metric}) against depth at the last epoch.",
                            metric), depth_figure(runs, metric))
        yield (ReportFigure(f"epochs_{metric}", section, f"{title} ({metric}) against epoch, per layer.", metric),
               epoch_figure(runs, metric))
    names: set[str] = set()
    for run in runs:
        if run.diagrams:
            name = f"persistence_{file_stem(run.label)}"
            name = name if name not in names else f"{name}_{len(names)}"
            names.add(name)
            epochs = " and ".join(map(str, sorted(run.diagrams)))
            yield (ReportFigure(name, "persistence", f"Output persistence diagrams of {run.label}, epochs {epochs}."),
                   persistence_epochs_figure(run.diagrams, run.layers, f"{run.label}: output persistence diagrams"))


@dataclass(frozen=True)
class ReportSection:
    """A section of the report: its anchor key, title and figures grouped by metric
    (the comparison and persistence sections have one group, under "")."""

    key: str
    title: str
    figures_by_metric: dict[str, list[ReportFigure]]


def report_sections(figures: list[ReportFigure]) -> list[ReportSection]:
    """The figure sections in report order: comparison, robustness, the metric sections, persistence."""
    titles = [("comparison", "Comparison"), ("robustness", "Robustness: accuracy under Gaussian input noise"),
              *[(family.key, family.title) for family in metric_families()],
              ("other", "Other metrics"), ("persistence", "Persistence diagrams")]
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
