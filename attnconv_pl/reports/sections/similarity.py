"""The similarity section: each run's layer x layer CKA at its last epoch as a heatmap (read from
its ``cka_with:<layer>`` rows, so a run's ``dynamics.csv`` alone draws it); with several runs
probed on the same probe set, heatmaps of one run's layers against another's (Raghu et al. 2021:
ViT against ResNet), from the Gram matrices the runs' last probed epochs kept; the layers'
``cka_last`` against epoch (when does a layer settle?); then ``cka_prev``, ``cka_first`` and
``cka_last`` against depth and epochs. The matrix's own metrics get no figure each: the heatmaps
show them."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from attnconv_pl.analyses.similarity import WITH
from attnconv_pl.reports.bands import EPOCH_LABEL, set_epoch_ticks
from attnconv_pl.reports.document import Paragraph, Section
from attnconv_pl.reports.figures import PANEL_COLUMNS, ReportFigure, file_stem, metric_figures
from attnconv_pl.reports.layout import fitted, set_margins
from attnconv_pl.reports.records import ProbedRun, metric_unit, report_metrics, runs_by_group
from attnconv_pl.reports.sections import family_sections
from attnconv_pl.reports.similarity import LAST, cross_cka, last_grams, probe_set_difference

NAME = "similarity"
ACROSS_EPOCHS = ("cka_prev", "cka_first", LAST)
CAPTION = "linear CKA (minibatch; a similarity: 1 = the same representation up to rotation and scale)"


def layer_matrix(run: ProbedRun) -> Optional[tuple[int, list[str], np.ndarray]]:
    """``(epoch, layers, (L, L) CKA)`` at the run's last epoch with a matrix (diagonal 1, NaN where
    a pair was not computed); None when the run has none (one layer, or no similarity analysis)."""
    metrics = [metric for metric in run.layer_metrics() if metric.startswith(WITH)]
    if not metrics:
        return None
    rows = {layer for metric in metrics for layer in run.metric_layers(metric)}
    layers = [layer for layer in run.layers if layer in rows]
    epoch = max(epoch for epoch in run.epochs if any(
        np.isfinite(run.value(epoch, row, metric)) for metric in metrics for row in layers))
    matrix = np.array([[1.0 if row == column else run.value(epoch, row, WITH + column) for column in layers]
                       for row in layers])
    return epoch, layers, matrix


def matrix_figure(panels: Sequence[tuple[str, np.ndarray]], rows: list[str], columns: list[str],
                  labels: tuple[str, str] = ("", "")) -> Figure:
    """Heatmaps of CKA matrices side by side with one colour bar 0..1: ``panels`` ``(title, (R, C))``,
    rows ``rows`` top to bottom, columns ``columns`` left to right (values written in the cells when
    both are at most 12), ``labels`` the y and x axes' titles."""
    height, width = 0.6 + 0.35 * len(rows), 0.6 + 0.35 * len(columns)
    figure = Figure(figsize=(len(panels) * (width + 1.3) + 0.8, height + 1.5))
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, matrix) in zip(axes, panels):
        image = axis.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        if len(rows) <= 12 and len(columns) <= 12:
            for (row, column), value in np.ndenumerate(matrix):
                axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                          color="black" if value > 0.6 else "white")
        axis.set_xticks(range(len(columns)), [fitted(layer, 16) for layer in columns], rotation=60, ha="right",
                        fontsize=7)
        axis.set_yticks(range(len(rows)), [fitted(layer, 16) for layer in rows], fontsize=7)
        axis.set_ylabel(fitted(labels[0], 40), fontsize=7)
        axis.set_xlabel(fitted(labels[1], 40), fontsize=7)
        axis.set_title(title, fontsize=8)
    bar = axes[-1].inset_axes([1.0 + 0.15 / width, 0.0, 0.12 / width, 1.0])
    figure.colorbar(image, cax=bar, label="linear CKA")
    set_margins(figure, left=1.3, right=0.8, bottom=1.2, top=0.4, wspace=1.3)
    return figure


def heatmap(run: ProbedRun) -> Optional[Figure]:
    """The run's last layer x layer CKA matrix, rows and columns in depth order."""
    found = layer_matrix(run)
    if found is None:
        return None
    epoch, layers, matrix = found
    return matrix_figure([(f"{run.label}: CKA between layers, epoch {epoch}", matrix)], layers, layers)


@dataclass(frozen=True)
class Comparison:
    """Runs of two comparison groups (or two seeds of one) whose layers are compared: ``pairs``
    ``(row run, column run)`` probed on the same probe set, the first pair's drawn."""

    pairs: tuple[tuple[ProbedRun, ProbedRun], ...]


def comparisons(runs: list[ProbedRun]) -> tuple[list[Comparison], list[str]]:
    """Which runs' layers are compared: for every two comparison groups, each seed of the one with
    each seed of the other; within a group of several seeds, every two seeds (how similar seeds
    are: the yardstick for the rest); only runs with Gram matrices. Also, per two groups with runs
    that cannot be compared, a sentence saying why."""
    groups = [[run for run in group if last_grams(run)] for group in runs_by_group(runs).values()]
    groups = [group for group in groups if group]
    chosen, refused = [], []
    for index, rows in enumerate(groups):
        for columns in groups[index:]:
            pairs = itertools.combinations(rows, 2) if columns is rows else itertools.product(rows, columns)
            comparable, differences = [], []
            for row, column in pairs:
                difference = probe_set_difference(last_grams(row)[1], last_grams(column)[1])
                (comparable if difference is None else differences).append((row, column, difference))
            if differences:
                row, column, difference = differences[0]
                pair = f"{row.label} and {column.label}"
                refused.append((f"runs of {row.group} and {column.group} are not compared ({len(differences)} pairs, "
                                f"e.g. {pair})" if len(differences) > 1 else f"{pair} are not compared")
                               + f": {difference}.")
            if comparable:  # seeds of a group probe the same layers, unless told otherwise
                chosen.append(Comparison(tuple((row, column) for row, column, _ in comparable
                                               if layer_names((row, column)) == layer_names(comparable[0][:2]))))
    return chosen, refused


def layer_names(pair: tuple[ProbedRun, ProbedRun]) -> tuple[list[str], list[str]]:
    """The layers of a pair's Gram matrices, of the row run and of the column run."""
    return last_grams(pair[0])[1]["layers"], last_grams(pair[1])[1]["layers"]


def comparison_figure(comparison: Comparison) -> Figure:
    """The first pair's layers x layers CKA at their last epochs and, with several pairs of the same
    layers, the mean over them (the seeds' pairs)."""
    (epoch_a, rows), (epoch_b, columns) = last_grams(comparison.pairs[0][0]), last_grams(comparison.pairs[0][1])
    first = cross_cka(rows, columns).values.numpy()
    a, b = comparison.pairs[0]
    epochs = f"epoch {epoch_a}" if epoch_a == epoch_b else f"epochs {epoch_a} and {epoch_b}"
    panels = [(f"{fitted(a.label, 30)} vs {fitted(b.label, 30)}, {epochs}", first)]
    if len(comparison.pairs) > 1:
        others = [cross_cka(last_grams(row)[1], last_grams(column)[1]).values.numpy()
                  for row, column in comparison.pairs[1:]]
        panels.append((f"{fitted(a.group, 30)} vs {fitted(b.group, 30)}: mean over {len(comparison.pairs)} pairs of "
                       "seeds", np.mean([first, *others], axis=0)))
    return matrix_figure(panels, list(rows["layers"]), list(columns["layers"]), (a.label, b.label))


def comparison_caption(comparison: Comparison) -> str:
    a, b = comparison.pairs[0]
    mean = f"; right: the mean over {len(comparison.pairs)} pairs of seeds" if len(comparison.pairs) > 1 else ""
    return (f"Representation similarity across runs: {CAPTION} of every layer of {a.label} (rows) with every "
            f"layer of {b.label} (columns) on the same probe set, at their last probed epochs{mean}.")


def settle_figure(runs: list[ProbedRun]) -> Optional[Figure]:
    """``cka_last`` against epoch, a panel per comparison group (the mean over its seeds), a line per
    layer coloured by depth: a layer has settled once its line stays near 1. None without
    ``cka_last``."""
    groups = {group: members for group, members in runs_by_group(runs).items()
              if any(member.metric_layers(LAST) for member in members)}
    if not groups:
        return None
    columns = min(PANEL_COLUMNS, len(groups))
    figure = Figure(figsize=(max(4.4, 3.2 * columns + 0.5), 2.6 * math.ceil(len(groups) / columns) + 0.9))
    axes = figure.subplots(math.ceil(len(groups) / columns), columns, squeeze=False)
    for axis, (group, members) in zip(axes.flat, groups.items()):
        draw_settling(axis, members)
        axis.set_title(fitted(group, 40) + (f", mean over {len(members)} seeds" if len(members) > 1 else ""),
                       fontsize=8)
    for axis in list(axes.flat)[len(groups):]:
        axis.set_visible(False)
    figure.suptitle("CKA of each layer with itself at the last probed epoch: when does a layer settle?", fontsize=9)
    set_margins(figure, left=0.7, bottom=0.55, top=0.55, wspace=0.55, hspace=0.7)
    return figure


def draw_settling(axis: Axes, members: list[ProbedRun]) -> None:
    """One line per layer of ``members`` (seeds: their mean at each epoch), shallow to deep from
    dark to light, and their legend (lower right: lines end at 1, top right)."""
    layers = list(dict.fromkeys(layer for member in members for layer in member.metric_layers(LAST)))
    epochs = sorted({epoch for member in members for layer in layers for epoch in member.series(layer, LAST)[0]})
    colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(layers)))
    for layer, colour in zip(layers, colours):
        values = np.array([[member.value(epoch, layer, LAST) for epoch in epochs] for member in members])
        axis.plot(epochs, np.nanmean(values, axis=0), marker=".", color=colour, label=fitted(layer, 20))
    set_epoch_ticks(axis, epochs)
    axis.set_ylim(min(0.0, axis.get_ylim()[0]), 1.05)
    axis.set_xlabel(EPOCH_LABEL, fontsize=7)
    axis.set_ylabel(metric_unit(LAST), fontsize=7)
    axis.tick_params(labelsize=7)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=6, ncol=1 + len(layers) // 8, framealpha=0.8)


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """Each run's heatmap, the heatmaps across runs, the layers settling, then ``cka_prev``,
    ``cka_first`` and ``cka_last`` against depth and epochs."""
    for run in runs:
        drawn = heatmap(run)
        if drawn is not None:
            yield (ReportFigure(f"similarity_matrix_{file_stem(run.label)}", NAME,
                                f"{CAPTION[0].upper()}{CAPTION[1:]} between every two probed layers of {run.label} "
                                "at its last epoch."), drawn)
    for comparison in comparisons(runs)[0]:
        a, b = comparison.pairs[0]
        yield (ReportFigure(f"similarity_across_{file_stem(a.label)}_vs_{file_stem(b.label)}", NAME,
                            comparison_caption(comparison)), comparison_figure(comparison))
    settling = settle_figure(runs)
    if settling is not None:
        yield (ReportFigure("similarity_settling", NAME, f"{LAST}: {CAPTION} of each layer with itself at its run's "
                            "last probed epoch, against epoch (1 at the last); a line per layer, dark = shallow, "
                            "light = deep."), settling)
    yield from metric_figures(runs, [metric for metric in report_metrics(runs) if metric in ACROSS_EPOCHS])


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The figure sections, the first one ending with the pairs of runs that could not be compared."""
    found = family_sections(NAME, figures)
    refused = comparisons(runs)[1]
    if not found or not refused:
        return found
    note = Paragraph(("CKA across runs needs the same probe set (dataset, split, inputs, CKA batches): "
                      + " ".join(refused),))
    return [replace(found[0], blocks=(*found[0].blocks, note)), *found[1:]]
