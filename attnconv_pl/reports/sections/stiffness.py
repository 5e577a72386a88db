"""The stiffness section: each index against depth and against epochs (the metric families'
figures), and the mean gate against the channel rate for a few gated blocks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from matplotlib.figure import Figure

from attnconv_pl.reports.document import Section
from attnconv_pl.reports.figures import ReportFigure, file_stem
from attnconv_pl.reports.layout import set_margins
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import family_figures, family_sections, figure_sections

NAME = "stiffness"
GATES = ("stiffness_gates", "Gates against channel rates")
BLOCKS_SHOWN = 3


def gated_channels(run: ProbedRun) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per gated block, (rates (C,), mean gate (C,)) at the run's last analysed epoch ({} without)."""
    by_epoch = run.artifacts.get(NAME) or {}
    return by_epoch[max(by_epoch)].get("channels", {}) if by_epoch else {}


def gate_figure(run: ProbedRun) -> Figure | None:
    """The mean gate of each channel against its rate, for the first, middle and last gated blocks."""
    channels = gated_channels(run)
    if not channels:
        return None
    blocks = list(channels)
    shown = [blocks[index] for index in sorted({0, len(blocks) // 2, len(blocks) - 1})][:BLOCKS_SHOWN]
    figure = Figure(figsize=(2.8 * len(shown) + 0.6, 2.8))
    axes = figure.subplots(1, len(shown), squeeze=False)[0]
    for axis, block in zip(axes, shown):
        rates, gates = channels[block]
        axis.scatter(rates, gates, s=8, alpha=0.7)
        axis.set_xscale("log")
        axis.set_title(block, fontsize=8)
        axis.set_xlabel("channel rate ‖f(x)_c‖ / ‖x_c‖", fontsize=7)
        axis.set_ylabel("mean gate a_c", fontsize=7)
        axis.tick_params(labelsize=6)
        axis.grid(alpha=0.3)
    figure.suptitle(f"{run.label}: gate against rate per channel (last epoch)", fontsize=9)
    set_margins(figure, bottom=0.55, top=0.55, left=0.55)
    return figure


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The metrics' figures, then gate against rate for the first run of each gated group."""
    yield from family_figures(NAME, runs)
    seen: set[str] = set()
    for run in runs:
        if run.group in seen:
            continue
        drawn = gate_figure(run)
        if drawn is not None:
            seen.add(run.group)
            yield (ReportFigure(f"stiffness_gates_{file_stem(run.label)}", GATES[0],
                                f"Mean gate against channel rate of {run.label}'s first, middle and last gated "
                                "blocks at its last epoch."), drawn)


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    return family_sections(NAME, figures) + figure_sections(figures, [GATES])
