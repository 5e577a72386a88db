"""The figures every analysis's metrics get in a probe report (depth profiles per metric family
and each metric against epoch) and how figures are grouped into sections; each saved as a PNG. An analysis's
own figures are drawn by its section module (``reports/sections/<analysis>.py``)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from attnconv_pl.io.atomic import atomic_path
from attnconv_pl.reports.bands import EPOCH_LABEL, draw_band, group_bands, probed_epochs, set_epoch_ticks
from attnconv_pl.reports.comparison import use_log_scale
from attnconv_pl.reports.layout import fitted, legend_below, set_margins, text_height, wrapped
from attnconv_pl.reports.profiles import depth_profile_figure, depth_profiles
from attnconv_pl.reports.records import (
    INPUT_LAYER,
    ProbedRun,
    metric_families,
    metric_section,
    metric_title,
    metric_unit,
    runs_by_group,
)

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


def epoch_figure(runs: list[ProbedRun], metric: str) -> Figure:
    """``metric`` against completed epochs, one panel per layer with that metric (all runs' such
    layers, in depth order), one line per group: the mean over its runs (seeds) and, with several,
    a band of ± one sample standard deviation; x ticks on the probed epochs."""
    layers = list(dict.fromkeys(layer for run in runs for layer in run.metric_layers(metric)))
    columns = min(PANEL_COLUMNS, len(layers))
    rows = math.ceil(len(layers) / columns)
    figure = Figure(figsize=(max(4.4, 2.4 * columns + 0.5), 2.0 * rows + 0.9))
    axes = figure.subplots(rows, columns, squeeze=False)
    groups = list(runs_by_group(runs))
    for axis, layer in zip(axes.flat, layers):
        for band in group_bands(runs, lambda run, layer=layer: run.series(layer, metric)):
            draw_band(axis, band, f"C{groups.index(band.group)}", label=band.label)
        axis.set_title(fitted(layer, 30), fontsize=8)
        if use_log_scale(np.concatenate([line.get_ydata() for line in axis.lines] or [np.zeros(0)])):
            axis.set_yscale("log")
        set_epoch_ticks(axis, probed_epochs(runs))
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(layers):]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel(metric_unit(metric), fontsize=7)
    for index in range(max(0, len(layers) - columns), len(layers)):  # the lowest panel of each column
        axes.flat[index].set_xlabel(EPOCH_LABEL, fontsize=7)
    entries = {label: handle for axis in axes.flat for handle, label in zip(*axis.get_legend_handles_labels())}
    legend = legend_below(figure, list(entries.values()), list(entries))
    several = any(run_count > 1 for run_count in map(len, runs_by_group(runs).values()))
    title = wrapped(f"{metric_title(metric)} ({metric}) per layer over training"
                    + (", mean ± sd over seeds" if several else ""), int(14 * figure.get_figwidth()))
    extra = text_height(title, 9) - text_height("title", 9)  # a title of several lines
    figure.set_size_inches(figure.get_figwidth(), figure.get_figheight() + extra)
    figure.suptitle(title, fontsize=9)
    set_margins(figure, left=0.7, bottom=0.55 + legend, top=0.5 + extra, wspace=0.55, hspace=0.7)
    return figure


def family_titles() -> dict[str, str]:
    """The short title (before its colon) of each metric family's report section, by key."""
    return {family.key: family.title.split(":")[0] for family in metric_families()} | {"other": "Other metrics"}


def metric_figures(runs: list[ProbedRun], metrics: list[str]) -> Iterator[tuple[ReportFigure, Figure]]:
    """Per report section (:func:`~attnconv_pl.reports.records.metric_section`) of ``metrics``: the
    depth profiles of its metrics (one figure per group, a panel per metric), then each metric
    against epoch (a panel per layer)."""
    by_section: dict[str, list[str]] = {}
    for metric in metrics:
        by_section.setdefault(metric_section(metric), []).append(metric)
    titles = family_titles()
    for section, section_metrics in by_section.items():
        for group, profiles in depth_profiles(runs, section_metrics).items():
            seeds = profiles[0].runs
            averaged = f", mean over {seeds} seeds" if seeds > 1 else ""
            yield (ReportFigure(f"depth_{section}_{file_stem(group)}", section,
                                f"{titles.get(section, section)} of {group} against depth, one line per probed epoch "
                                f"(colour: completed epochs){averaged}; layer {INPUT_LAYER!r} is the probe inputs "
                                "themselves where they have the metric."),
                   depth_profile_figure(profiles, f"{group}: {titles.get(section, section).lower()} against depth, "
                                                  f"per probed epoch{averaged}"))
        for metric in section_metrics:
            yield (ReportFigure(f"epochs_{metric}", section, f"{metric_title(metric)} ({metric}) against completed "
                                "epochs, per layer; lines: group means, bands: ± one sd over seeds.", metric),
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
