"""Figures of persistence diagrams."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


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
    """A grid of diagrams: one row per epoch, one column per layer, each layer's panels on one
    scale so that the change between epochs reads directly.

    Args:
        diagrams_by_epoch: ``{epoch: {layer: [H0 (m0, 2), H1 (m1, 2), ...]}}`` finite pairs.
        layers: the columns, in depth order (layers without diagrams leave an empty panel).
        title: figure title (e.g. the run).
    """
    epochs = sorted(diagrams_by_epoch)
    figure = Figure(figsize=(2.6 * max(1, len(layers)), 2.5 * max(1, len(epochs)) + 0.4))
    axes = figure.subplots(max(1, len(epochs)), max(1, len(layers)), squeeze=False)
    for column, layer in enumerate(layers):
        deaths = [float(d[:, 1].max()) for epoch in epochs
                  for d in diagrams_by_epoch[epoch].get(layer, []) if len(d)]
        top = max(deaths + [1e-9])
        for row, epoch in enumerate(epochs):
            axis = axes[row, column]
            if layer in diagrams_by_epoch[epoch]:
                draw_diagrams(axis, diagrams_by_epoch[epoch][layer], f"{layer}, epoch {epoch}", top=top)
            else:
                axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
