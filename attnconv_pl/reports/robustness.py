"""The robustness figure: accuracy against the input-noise level, one line per group of runs.

Each run contributes its accuracy under Gaussian input noise at its last probed epoch; runs of
one group (same model and dataset, different seeds) are summarised by their mean and an error
bar of one sample standard deviation, as in the comparison figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from matplotlib.figure import Figure

from attnconv_pl.analyses.robustness import noise_metric
from attnconv_pl.reports.comparison import mean_and_std
from attnconv_pl.reports.layout import legend_below, set_margins
from attnconv_pl.reports.records import ProbedRun, runs_by_group


def noise_accuracy_at(run: ProbedRun, epoch: int) -> Optional[dict[float, float]]:
    """``{noise level: accuracy}`` of ``run`` at ``epoch``, levels ascending: the levels of its
    robustness artifacts, the accuracies its rows hold (NaN where none); None when robustness was
    not evaluated at that epoch."""
    found = run.artifacts.get("robustness", {}).get(epoch)
    if found is None:
        return None
    return {level: run.value(epoch, "", noise_metric(level)) for level in found["noise_levels"]}


def final_noise_accuracy(run: ProbedRun) -> Optional[dict[float, float]]:
    """:func:`noise_accuracy_at` the run's last probed epoch."""
    return noise_accuracy_at(run, run.last_epoch)


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
        measured = [accuracy for accuracy in map(final_noise_accuracy, members) if accuracy is not None]
        if not measured:
            continue
        levels = np.array(sorted({level for accuracy in measured for level in accuracy}))
        values = np.array([[accuracy.get(level, np.nan) for level in levels] for accuracy in measured], dtype=float)
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
    classes = {run.description.get("model", {}).get("num_classes") for run in runs
               if final_noise_accuracy(run) is not None}
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
