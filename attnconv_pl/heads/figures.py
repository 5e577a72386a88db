"""The figures of a convex-heads study: accuracy per head, the certificate against training progress, the
rank of Z* against beta, and attention heads' token-token matrices with the token groups they
induce. Each function takes plain numbers and returns a matplotlib ``Figure`` (no pyplot state);
``attnconv_pl.reports.figures.save_figure`` writes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

SEED_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")


def accuracy_figure(accuracy: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Grouped bars of mean accuracy with +- sd error bars, one group per head.

    Args:
        accuracy: ``{head: {"top-1": per-seed values, "top-5": per-seed values}}`` in [0, 1].
    """
    heads = list(accuracy)
    kinds = list(next(iter(accuracy.values())))
    figure = Figure(figsize=(1.4 * len(heads) + 2, 3.6), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        values = [np.asarray(accuracy[head][kind], dtype=float) for head in heads]
        positions = np.arange(len(heads)) + (k - (len(kinds) - 1) / 2) * width
        axes.bar(positions, [v.mean() for v in values], width,
                 yerr=[v.std(ddof=1) if len(v) > 1 else 0 for v in values], capsize=3, label=kind)
    axes.set_xticks(np.arange(len(heads)), heads, rotation=20, ha="right")
    axes.set_ylabel("validation accuracy")
    axes.set_ylim(0, 1.15)
    axes.set_yticks(np.linspace(0, 1, 6))
    axes.set_title("Accuracy per head (mean ± sd over seeds)")
    axes.legend(loc="upper left", ncols=len(kinds), fontsize="small")
    return figure


def certificate_figure(histories: Mapping[str, Mapping[str, Sequence[float]]],
                       step_label: str = "completed epoch") -> Figure:
    """The objective and the relative duality gap (duality_gap / objective, log scale) against
    training progress, one line per run.

    Args:
        histories: ``{run label: {"step": ..., "objective": ..., "duality_gap": ...}}``; ``step``
            counts epochs or optimiser iterations.
        step_label: the x axis's label (what ``step`` counts).
    """
    figure = Figure(figsize=(8, 3.4), layout="constrained")
    objective_axes, gap_axes = figure.subplots(1, 2)
    for (label, history), colour in zip(histories.items(), SEED_COLOURS * len(histories)):
        steps = np.asarray(history["step"], dtype=float)
        objective = np.asarray(history["objective"], dtype=float)
        objective_axes.plot(steps, objective, marker=".", color=colour, label=label)
        gap_axes.plot(steps, np.asarray(history["duality_gap"], dtype=float) / objective, marker=".", color=colour,
                      label=label)
    objective_axes.set(xlabel=step_label, ylabel="objective", title="Training objective")
    gap_axes.set(xlabel=step_label, ylabel="duality gap / objective", yscale="log",
                 title="Distance to the global optimum (bound)")
    gap_axes.legend(fontsize="small")
    return figure


def rank_figure(ranks: Mapping[float, Sequence[int]]) -> Figure:
    """rank(Z*) against beta (log scale): every seed's value and the mean.

    Args:
        ranks: ``{beta: per-seed ranks}``.
    """
    betas = sorted(ranks)
    figure = Figure(figsize=(4.5, 3.4), layout="constrained")
    axes = figure.add_subplot()
    for beta in betas:
        axes.scatter([beta] * len(ranks[beta]), ranks[beta], color="tab:grey", alpha=0.6, s=18)
    axes.plot(betas, [np.mean(ranks[beta]) for beta in betas], marker="o", color="tab:blue", label="mean over seeds")
    axes.set(xscale="log", xlabel="beta (weight of the nuclear norm)", ylabel="rank of Z*",
             title="Rank of the convex optimum")
    axes.legend()
    return figure


def token_figure(images: np.ndarray, matrices: np.ndarray, groups: np.ndarray,
                 titles: Sequence[str] = ()) -> Figure:
    """Per input: its tokens (rows of the image) coloured by group, and its token-token matrix.

    Args:
        images: (k, s, d): the k inputs' tokens, token t = row t.
        matrices: (k, s, s): their token-token matrices.
        groups: (k, s): the group of every token.
        titles: optional caption per input.
    """
    count, tokens = groups.shape
    figure = Figure(figsize=(2.6 * count, 5.2), layout="constrained")
    grid = figure.subplots(2, count, squeeze=False)
    for i in range(count):
        image_axes, matrix_axes = grid[0, i], grid[1, i]
        image_axes.imshow(images[i], cmap="gray_r", aspect="auto")
        for t in range(tokens):
            image_axes.add_patch(_row_band(t, images.shape[2], SEED_COLOURS[groups[i, t] % len(SEED_COLOURS)]))
        image_axes.set(xticks=[], yticks=range(tokens), ylabel="token (row)" if i == 0 else None,
                       title=titles[i] if i < len(titles) else None)
        limit = np.abs(matrices[i]).max() or 1.0
        shown = matrix_axes.imshow(matrices[i], cmap="RdBu_r", vmin=-limit, vmax=limit)
        matrix_axes.set(xticks=range(tokens), yticks=range(tokens), xlabel="token u",
                        ylabel="token t" if i == 0 else None)
        figure.colorbar(shown, ax=matrix_axes, shrink=0.7)
    figure.suptitle("Tokens coloured by the group their attention matrix sum_j X A_j X^T induces")
    return figure


def _row_band(row: int, width: int, colour: str) -> Rectangle:
    """A translucent band over image row ``row``."""
    return Rectangle((-0.5, row - 0.5), width, 1, facecolor=colour, alpha=0.3, edgecolor="none")
