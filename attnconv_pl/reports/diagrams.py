"""Figures of persistence diagrams, and which probed epochs' diagrams a report draws."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Optional, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from attnconv_pl.reports.layout import fitted, set_margins  # noqa: E402

MAX_DIAGRAM_EPOCHS = 6
"""Rows of a run's persistence figure by default: every probed topology epoch up to this many,
else this many spread evenly from the first to the last."""
ALL = "all"


def diagram_epochs(available: Sequence[int], chosen: Optional[Sequence[Union[int, str]]] = None) -> list[int]:
    """The epochs whose persistence diagrams a report draws, of ``available`` (a run's probed
    topology epochs), ascending.

    Args:
        available: the epochs with diagrams.
        chosen: the epochs asked for (those of ``available`` among them are drawn), ``["all"]``
            for every one; None: every one up to :data:`MAX_DIAGRAM_EPOCHS`, else that many spread
            evenly by position from the first to the last (both included).
    """
    epochs = sorted(available)
    if chosen is not None:
        return epochs if ALL in chosen else [epoch for epoch in epochs if epoch in set(chosen)]
    if len(epochs) <= MAX_DIAGRAM_EPOCHS:
        return epochs
    positions = np.linspace(0, len(epochs) - 1, MAX_DIAGRAM_EPOCHS).round().astype(int)
    return [epochs[position] for position in sorted(set(positions))]


def draw_diagrams(axis: Axes, diagrams: Sequence[np.ndarray], title: str, top: float | None = None) -> None:
    """(birth, death) points of each homology dimension and the diagonal on one axis.

    Args:
        axis: where to draw.
        diagrams: ``[H0 (m0, 2), H1 (m1, 2), ...]`` finite pairs.
        title: the panel's title (e.g. the layer).
        top: upper end of the diagonal (default: the largest death), to share a scale.
    """
    top = top or max([float(d[:, 1].max()) for d in diagrams if len(d)] + [1e-9])
    axis.plot([0, top], [0, top], color="0.6", linewidth=0.8)
    for dim, diagram in enumerate(diagrams):
        if len(diagram):
            axis.scatter(diagram[:, 0], diagram[:, 1], s=8, alpha=0.7, label=f"H{dim} ({len(diagram)})")
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("birth")
    axis.set_ylabel("death")
    axis.legend(fontsize=7, loc="lower right")


def persistence_figure(diagrams_by_layer: Mapping[str, Sequence[np.ndarray]], title: str) -> Figure:
    """One panel per layer: (birth, death) points of each homology dimension and the diagonal.

    Args:
        diagrams_by_layer: ``{layer: [H0 (m0, 2), H1 (m1, 2), ...]}`` finite pairs, in layer order.
        title: figure title (e.g. the run and epoch).
    """
    layers = list(diagrams_by_layer)
    columns = min(4, max(1, len(layers)))
    rows = max(1, math.ceil(len(layers) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for axis, layer in zip(axes.flat, layers):
        draw_diagrams(axis, diagrams_by_layer[layer], layer)
    for axis in list(axes.flat)[len(layers):]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def persistence_epochs_figure(diagrams_by_epoch: Mapping[int, Mapping[str, Sequence[np.ndarray]]],
                              layers: Sequence[str], title: str) -> Figure:
    """A grid of diagrams: one row per epoch (labelled on the left), one column per layer (named
    on top), each layer's panels on one scale so that the change between epochs reads directly.

    Args:
        diagrams_by_epoch: ``{epoch: {layer: [H0 (m0, 2), H1 (m1, 2), ...]}}`` finite pairs.
        layers: the columns, in depth order (layers without diagrams at an epoch leave an empty panel).
        title: figure title (e.g. the run).
    """
    epochs = sorted(diagrams_by_epoch)
    rows, columns = max(1, len(epochs)), max(1, len(layers))
    figure = Figure(figsize=(2.3 * columns + 0.9, 2.2 * rows + 0.8))
    axes = figure.subplots(rows, columns, squeeze=False)
    for column, layer in enumerate(layers):
        deaths = [float(d[:, 1].max()) for epoch in epochs
                  for d in diagrams_by_epoch[epoch].get(layer, []) if len(d)]
        top = max(deaths + [1e-9])
        for row, epoch in enumerate(epochs):
            axis = axes[row, column]
            if layer in diagrams_by_epoch[epoch]:
                draw_diagrams(axis, diagrams_by_epoch[epoch][layer], fitted(layer, 28) if row == 0 else "", top=top)
                axis.set_ylabel(f"epoch {epoch}\ndeath" if column == 0 else "", fontsize=8)
                axis.set_xlabel("birth" if row == rows - 1 else "", fontsize=8)
                axis.tick_params(labelsize=7)
            else:
                axis.set_visible(False)
    figure.suptitle(title, fontsize=10, y=1 - 0.1 / figure.get_figheight(), va="top")
    set_margins(figure, left=0.75, right=0.15, bottom=0.5, top=0.65, wspace=0.45, hspace=0.35)
    return figure
