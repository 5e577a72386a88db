"""The robustness figure: accuracy against the input-noise level, one line per group of runs.

Each run contributes its accuracy under Gaussian input noise at its last probed epoch; runs of
one group (same model and dataset, different seeds) are summarised by their mean and an error
bar of one sample standard deviation, as in the comparison figure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from attnconv_pl.reports.comparison import mean_and_std
from attnconv_pl.reports.layout import legend_below, set_margins
from attnconv_pl.reports.records import ProbedRun, runs_by_group


@dataclass(frozen=True)
class NoiseCurve:
    """One group's accuracy against noise level at its runs' last probed epochs.

    Attributes:
        group: the group's label.
        noise_levels: (K,) the levels any of its runs was evaluated at, ascending.
        mean: (K,) mean accuracy over the group's runs (a run missing a level is left out there).
        std: (K,) sample standard deviation over the runs (0 with fewer than two).
        runs: number of runs (seeds) with robustness numbers.
    """

    group: str
    noise_levels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    runs: int


def noise_curves(runs: list[ProbedRun]) -> list[NoiseCurve]:
    """The curve of every group that has robustness numbers, in the order groups first appear."""
    curves = []
    for group, members in runs_by_group(runs).items():
        measured = [run for run in members if run.final_robustness() is not None]
        if not measured:
            continue
        levels = np.array(sorted({level for run in measured for level in run.robustness.noise_levels}))
        values = np.array([[dict(zip(run.robustness.noise_levels, run.final_robustness())).get(level, np.nan)
                            for level in levels] for run in measured], dtype=float)
        mean, std = mean_and_std(values)
        curves.append(NoiseCurve(group, levels, mean, std, len(measured)))
    return curves


def robustness_figure(runs: list[ProbedRun]) -> Figure:
    """Accuracy against noise level per group (mean ± sd over seeds), with the chance level
    1 / num_classes when every run evaluated has the same number of classes."""
    figure = Figure(figsize=(5.2, 3.6))
    axis = figure.subplots()
    for curve in noise_curves(runs):
        axis.errorbar(curve.noise_levels, curve.mean, yerr=curve.std if curve.runs > 1 else None, marker="o",
                      markersize=4, capsize=3, linewidth=1.2,
                      label=f"{curve.group} ({curve.runs} seed{'s' if curve.runs > 1 else ''})")
    classes = {run.description.get("model", {}).get("num_classes") for run in runs if run.robustness is not None}
    if len(classes) == 1 and isinstance(next(iter(classes)), int):
        axis.axhline(1 / next(iter(classes)), color="grey", linestyle=":", linewidth=1, label="chance")
    axis.set_xlabel("noise standard deviation σ (normalised input units)", fontsize=8)
    axis.set_ylabel("accuracy", fontsize=8)
    axis.set_ylim(0, 1.02)
    axis.tick_params(labelsize=8)
    axis.grid(alpha=0.3)
    axis.set_title("Accuracy under Gaussian input noise, last epoch (mean ± sd over seeds)", fontsize=9)
    legend = legend_below(figure, *axis.get_legend_handles_labels())
    set_margins(figure, left=0.6, bottom=0.6 + legend, top=0.4)
    return figure
