"""Depth profiles: a metric against depth with one line per probed epoch, from initialisation
(light) to trained (dark), so a change of shape with training (an intrinsic dimension that rises
and then falls with depth, say) reads at a glance. Layer 0 is the probe inputs themselves when
they have the metric (:data:`~attnconv_pl.reports.records.INPUT_LAYER`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from attnconv_pl.reports.bands import EPOCH_LABEL, MAX_EPOCH_TICKS
from attnconv_pl.reports.comparison import mean_and_std, use_log_scale
from attnconv_pl.reports.layout import fitted, set_margins, text_height, wrapped
from attnconv_pl.reports.records import ProbedRun, metric_title, metric_unit, runs_by_group

COLOURS = colormaps["viridis_r"]
"""Sequential colour map of the epochs: light yellow at initialisation, dark blue trained."""
PANEL_COLUMNS = 4
TITLE_CHARACTERS = 40
"""Characters of a panel title's line that fit its width (longer titles take more lines)."""
COLOUR_BAR_WIDTH = 1.0
"""Inches at the right of a profile figure for the epochs' colour bar."""


@dataclass(frozen=True)
class DepthProfile:
    """One group's metric against depth at each probed epoch, summarised over its runs (seeds).

    Attributes:
        group: the group's label.
        metric: the metric.
        layers: (L,) the layers with the metric of its first run with any, the probe inputs first
            when they have it.
        epochs: (E,) the completed epochs with the metric, ascending.
        mean: (E, L) mean over the group's runs with a finite value.
        std: (E, L) sample standard deviation (ddof=1) over them; 0 where fewer than two.
        runs: number of runs in the group.
    """

    group: str
    metric: str
    layers: list[str]
    epochs: list[int]
    mean: np.ndarray
    std: np.ndarray
    runs: int


def depth_profile(members: list[ProbedRun], group: str, metric: str) -> DepthProfile | None:
    """The profile of ``metric`` over the runs of one group (None when none of them has it)."""
    layers = next((run.profile_layers(metric) for run in members if run.metric_layers(metric)), [])
    epochs = sorted({epoch for run in members for layer in run.metric_layers(metric)
                     for epoch in run.series(layer, metric)[0]})
    if not layers or not epochs:
        return None
    values = np.array([[[run.profile_value(epoch, layer, metric) for layer in layers] for epoch in epochs]
                       for run in members], dtype=float)
    mean, std = mean_and_std(values.reshape(len(members), -1))
    shape = (len(epochs), len(layers))
    return DepthProfile(group, metric, layers, epochs, mean.reshape(shape), std.reshape(shape), len(members))


def depth_profiles(runs: list[ProbedRun], metrics: list[str]) -> dict[str, list[DepthProfile]]:
    """``{group: [profile of each of metrics the group has]}``, groups in the order they first appear."""
    found = {}
    for group, members in runs_by_group(runs).items():
        profiles = [profile for metric in metrics if (profile := depth_profile(members, group, metric)) is not None]
        if profiles:
            found[group] = profiles
    return found


def epoch_norm(epochs: list[int]) -> Normalize:
    """The colour scale of the epochs (a single epoch gets the trained end's colour)."""
    return Normalize(vmin=min(epochs) - (len(set(epochs)) == 1), vmax=max(epochs))


def depth_profile_figure(profiles: list[DepthProfile], title: str) -> Figure:
    """One panel per metric of ``profiles`` (one group's), one line per probed epoch (its mean over
    the group's runs) coloured by epoch, with the epochs' colour bar on the right."""
    epochs = sorted({epoch for profile in profiles for epoch in profile.epochs})
    norm = epoch_norm(epochs)
    columns = min(PANEL_COLUMNS, len(profiles))
    rows = math.ceil(len(profiles) / columns)
    widest = max(len(layer) for profile in profiles for layer in profile.layers)
    bottom = 0.3 + 0.065 * min(widest, 24)
    titles = [f"{wrapped(metric_title(profile.metric), TITLE_CHARACTERS)}\n{wrapped(profile.metric, TITLE_CHARACTERS)}"
              for profile in profiles]
    extra = max(text_height(text, 8) for text in titles) - text_height("title\nmetric", 8)  # titles over 2 lines
    width = 2.9 * columns + COLOUR_BAR_WIDTH + 0.4
    suptitle = wrapped(title, int(14 * width))
    top = 0.7 + extra + text_height(suptitle, 10) - text_height("title", 10)
    figure = Figure(figsize=(width, (2.15 + bottom + extra) * rows + top - extra - 0.15))  # top: 1 row's extra
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis, profile, panel_title in zip(axes.flat, profiles, titles):
        positions = np.arange(len(profile.layers))
        for epoch, mean in zip(profile.epochs, profile.mean):
            axis.plot(positions, mean, marker="o", markersize=3, linewidth=1.2, color=COLOURS(norm(epoch)),
                      label=f"epoch {epoch}")
        if use_log_scale(profile.mean):
            axis.set_yscale("log")
        axis.set_xticks(positions, [fitted(layer, 24) for layer in profile.layers], rotation=45, ha="right",
                        fontsize=7)
        axis.set_title(panel_title, fontsize=8)
        axis.set_ylabel(metric_unit(profile.metric), fontsize=7)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(profiles):]:
        axis.set_visible(False)
    figure.suptitle(suptitle, fontsize=10)
    set_margins(figure, left=0.7, right=COLOUR_BAR_WIDTH + 0.2, bottom=bottom, top=top, wspace=0.7,
                hspace=bottom + 0.5 + extra)
    add_epoch_colour_bar(figure, norm, epochs, bottom, top)
    return figure


def add_epoch_colour_bar(figure: Figure, norm: Normalize, epochs: list[int], bottom: float, top: float) -> None:
    """The epochs' colour bar in the right margin between the panels' bottom and top margins
    (inches), ticks on the probed epochs."""
    width, height = figure.get_size_inches()
    bar = figure.add_axes((1 - (COLOUR_BAR_WIDTH - 0.15) / width, bottom / height, 0.15 / width,
                           (height - bottom - top) / height))
    colour_bar = figure.colorbar(ScalarMappable(norm=norm, cmap=COLOURS), cax=bar)
    if len(epochs) <= MAX_EPOCH_TICKS:
        colour_bar.set_ticks(epochs)
    colour_bar.set_label(EPOCH_LABEL, fontsize=7)
    bar.tick_params(labelsize=7)
