"""The similarity section: each run's layer x layer CKA at its last epoch as a heatmap (read from
its ``cka_with:<layer>`` rows, so a run's ``dynamics.csv`` alone draws it), then ``cka_prev`` and
``cka_first`` against depth and against epochs (when does a layer settle?). The matrix's own
metrics get no figure each: the heatmap shows them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import numpy as np
from matplotlib.figure import Figure

from attnconv_pl.analyses.similarity import WITH
from attnconv_pl.reports.document import Section
from attnconv_pl.reports.figures import ReportFigure, file_stem, metric_figures
from attnconv_pl.reports.layout import fitted, set_margins
from attnconv_pl.reports.records import ProbedRun, report_metrics
from attnconv_pl.reports.sections import family_sections

NAME = "similarity"
ACROSS_EPOCHS = ("cka_prev", "cka_first")


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


def heatmap(run: ProbedRun) -> Optional[Figure]:
    """The run's last layer x layer CKA matrix, rows and columns in depth order."""
    found = layer_matrix(run)
    if found is None:
        return None
    epoch, layers, matrix = found
    panel = 1.0 + 0.35 * len(layers)
    figure = Figure(figsize=(panel + 2.0, panel + 1.3))
    axis, bar = figure.subplots(1, 2, gridspec_kw={"width_ratios": [panel, 0.15]})
    image = axis.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    if len(layers) <= 12:
        for (row, column), value in np.ndenumerate(matrix):
            axis.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                      color="black" if value > 0.6 else "white")
    names = [fitted(layer, 16) for layer in layers]
    axis.set_xticks(range(len(layers)), names, rotation=60, ha="right", fontsize=7)
    axis.set_yticks(range(len(layers)), names, fontsize=7)
    figure.colorbar(image, cax=bar, label="linear CKA")
    axis.set_title(f"{run.label}: CKA between layers, epoch {epoch}", fontsize=9)
    set_margins(figure, left=0.9, right=0.75, bottom=0.9, top=0.4, wspace=0.15)
    return figure


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """Each run's heatmap, then ``cka_prev`` and ``cka_first`` against depth and epochs."""
    for run in runs:
        drawn = heatmap(run)
        if drawn is not None:
            yield (ReportFigure(f"similarity_matrix_{file_stem(run.label)}", NAME,
                                f"Linear CKA (minibatch, a similarity: 1 = the same representation up to rotation "
                                f"and scale) between every two probed layers of {run.label} at its last epoch."),
                   drawn)
    yield from metric_figures(runs, [metric for metric in report_metrics(runs) if metric in ACROSS_EPOCHS])


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    return family_sections(NAME, figures)
