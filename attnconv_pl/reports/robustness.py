"""The robustness figure: accuracy against the input-noise level, and against the attack radius
per adversarial attack measured, one line per group of runs.

Each run contributes its accuracies at its last probed epoch; runs of one group (same model and
dataset, different seeds) are summarised by their mean and an error bar of one sample standard
deviation, as in the comparison figure. Noise levels and attack radii are in units of the
normalised input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from attnconv_pl.analyses.robustness import attack_metric, noise_metric
from attnconv_pl.reports.comparison import mean_and_std
from attnconv_pl.reports.layout import legend_below, set_margins
from attnconv_pl.reports.records import ProbedRun, runs_by_group

NORM_SYMBOLS = {"linf": "L∞", "l2": "L2"}

Accuracies = dict[float, float]
"""``{level or radius: accuracy}``, ascending."""


def noise_accuracy_at(run: ProbedRun, epoch: int) -> Optional[Accuracies]:
    """``{noise level: accuracy}`` of ``run`` at ``epoch``, levels ascending: the levels of its
    robustness artifacts, the accuracies its rows hold (NaN where none); None when robustness was
    not evaluated at that epoch."""
    found = run.artifacts.get("robustness", {}).get(epoch)
    if found is None:
        return None
    return {level: run.value(epoch, "", noise_metric(level)) for level in found["noise_levels"]}


def final_noise_accuracy(run: ProbedRun) -> Optional[Accuracies]:
    """:func:`noise_accuracy_at` the run's last probed epoch."""
    return noise_accuracy_at(run, run.last_epoch)


def attack_accuracy_at(run: ProbedRun, epoch: int) -> dict[str, Accuracies]:
    """``{attack: {eps: accuracy}}`` of ``run`` at ``epoch``, attacks named ``<method>_<norm>``
    (``pgd_linf``) in the order measured: the attacks and radii of its robustness artifact
    ``attacks``, the accuracies its rows hold (NaN where none); {} when none was measured then."""
    attacks = run.artifacts.get("robustness", {}).get(epoch, {}).get("attacks")
    if not attacks:
        return {}
    norm = attacks["norm"]
    return {f"{method}_{norm}": {eps: run.value(epoch, "", attack_metric(method, norm, eps))
                                 for eps in attacks["eps_grid"]} for method in attacks["methods"]}


@dataclass(frozen=True)
class AccuracyCurve:
    """One group's accuracy against a perturbation's size at its runs' last probed epochs.

    Attributes:
        group: the group's label.
        levels: (K,) the noise levels or attack radii any of its runs was evaluated at, ascending.
        mean: (K,) mean accuracy over the group's runs (a run missing a level is left out there).
        std: (K,) sample standard deviation over the runs (0 with fewer than two).
        runs: number of runs (seeds) with these numbers.
    """

    group: str
    levels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    runs: int


def group_curves(runs: list[ProbedRun], accuracy_of: Callable[[ProbedRun], Optional[Accuracies]]) -> list[
        AccuracyCurve]:
    """The curve of every group whose runs have ``accuracy_of(run)`` (None or {}: none), in the
    order groups first appear."""
    curves = []
    for group, members in runs_by_group(runs).items():
        measured = [accuracy for accuracy in map(accuracy_of, members) if accuracy]
        if not measured:
            continue
        levels = np.array(sorted({level for accuracy in measured for level in accuracy}))
        values = np.array([[accuracy.get(level, np.nan) for level in levels] for accuracy in measured], dtype=float)
        mean, std = mean_and_std(values)
        curves.append(AccuracyCurve(group, levels, mean, std, len(measured)))
    return curves


def noise_curves(runs: list[ProbedRun]) -> list[AccuracyCurve]:
    """Accuracy against noise level, per group that has robustness numbers."""
    return group_curves(runs, final_noise_accuracy)


def attack_curves(runs: list[ProbedRun]) -> dict[str, list[AccuracyCurve]]:
    """``{attack: its curves}``: accuracy against radius per group, for every attack (``pgd_linf``)
    any run measured at its last epoch, in the order they first appear."""
    attacks = dict.fromkeys(attack for run in runs for attack in attack_accuracy_at(run, run.last_epoch))
    return {attack: group_curves(runs, lambda run, attack=attack: attack_accuracy_at(run, run.last_epoch).get(attack))
            for attack in attacks}


def attack_title(attack: str) -> str:
    """``pgd_linf`` as ``PGD, L∞``."""
    method, norm = attack.split("_", 1)
    return f"{method.upper()}, {NORM_SYMBOLS.get(norm, norm)}"


def robustness_figure(runs: list[ProbedRun]) -> Figure:
    """Accuracy against noise level, then against radius for each attack measured (a panel each),
    per group (mean ± sd over seeds, one colour per group in every panel), with the chance level
    1 / num_classes when every run evaluated has the same number of classes."""
    attacks = attack_curves(runs)
    panels = [("Gaussian noise", "noise standard deviation σ\n(normalised input units)", noise_curves(runs))]
    panels += [(attack_title(attack), "eps (normalised input units)", curves) for attack, curves in attacks.items()]
    figure = Figure(figsize=(5.2 + 3.0 * (len(panels) - 1), 3.6))
    axes = np.atleast_1d(figure.subplots(1, len(panels), sharey=True))
    groups = list(runs_by_group(runs))
    colours = {group: f"C{index % 10}" for index, group in enumerate(groups)}
    classes = {run.description.get("model", {}).get("num_classes") for run in runs
               if final_noise_accuracy(run) is not None}
    chance = 1 / next(iter(classes)) if len(classes) == 1 and isinstance(next(iter(classes)), int) else None
    legend: dict[str, object] = {}
    for axis, (title, label, curves) in zip(axes, panels):
        legend |= draw_curves(axis, curves, colours, chance)
        axis.set_xlabel(label, fontsize=8)
        axis.set_title(title, fontsize=9)
    axes[0].set_ylabel("accuracy", fontsize=8)
    axes[0].set_ylim(0, 1.02)
    if "chance" in legend:
        legend["chance"] = legend.pop("chance")  # last
    figure.suptitle("Accuracy at the last epoch (mean ± sd over seeds)", fontsize=9)
    height = legend_below(figure, list(legend.values()), list(legend))
    set_margins(figure, left=0.6, bottom=0.75 + height, top=0.6)
    return figure


def draw_curves(axis: Axes, curves: list[AccuracyCurve], colours: dict[str, str], chance: Optional[float]) -> dict[
        str, object]:
    """Draw ``curves`` (one colour per group) and the chance line on ``axis``; the legend entries
    ``{label: handle}`` of the groups drawn (and ``chance``)."""
    entries = {}
    for curve in curves:
        label = f"{curve.group} ({curve.runs} seed{'s' if curve.runs > 1 else ''})"
        entries[label] = axis.errorbar(curve.levels, curve.mean, yerr=curve.std if curve.runs > 1 else None,
                                       marker="o", markersize=4, capsize=3, linewidth=1.2, color=colours[curve.group],
                                       label=label)
    if chance is not None:
        entries["chance"] = axis.axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    axis.tick_params(labelsize=8)
    axis.grid(alpha=0.3)
    return entries
