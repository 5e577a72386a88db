"""The robustness section: accuracy under Gaussian input noise against its level and under each
adversarial attack measured against its radius, per model (the numbers under noise per run are in
the training-records table), and the run's ``robustness`` entry of ``summary.json``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from matplotlib.figure import Figure

from attnconv_pl.reports.document import Section
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.robustness import (
    attack_accuracy_at,
    final_noise_accuracy,
    noise_accuracy_at,
    robustness_figure,
)
from attnconv_pl.reports.sections import family_sections


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The robustness figure, when any run was evaluated under noise at its last epoch."""
    if any(final_noise_accuracy(run) is not None for run in runs):
        attacked = any(attack_accuracy_at(run, run.last_epoch) for run in runs)
        yield ReportFigure("robustness", "robustness",
                           "Accuracy under additive Gaussian noise on the normalised inputs against its standard "
                           "deviation σ" + (", and under each adversarial attack (FGSM, PGD; no clamping to the "
                                            "pixel range) against its radius eps in normalised input units (a pixel "
                                            "radius divided by the data's std)" if attacked else "")
                           + ", at each run's last probed epoch, per model; error bars: one standard deviation over "
                           "seeds."), robustness_figure(runs)


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The robustness figure's section."""
    return family_sections("robustness", figures)


def summary(run: ProbedRun) -> dict[str, Any]:
    """``robustness``: None when not evaluated, else ``noise_levels``, the inputs (``dataset``,
    ``split``, ``inputs``, ``seed``), ``accuracy`` (``{epoch: [accuracy per level]}``) and
    ``final_accuracy`` (at the last probed epoch, None when not evaluated then); with attacks
    also ``attacks``: the attack settings (``methods``, ``norm``, ``eps_grid``, ``pgd_steps``,
    ``pgd_step_factor``, ``random_start``), ``accuracy`` (``{epoch: {attack: [accuracy per eps]}}``,
    attacks named ``<method>_<norm>``) and ``final_accuracy`` (``{attack: [accuracy per eps]}``)."""
    measured = run.artifacts.get("robustness", {})
    if not measured:
        return {"robustness": None}
    last = measured[max(measured)]
    final = final_noise_accuracy(run)
    entry = {"noise_levels": list(last["noise_levels"]), **last.get("inputs", {}),
             "accuracy": {str(epoch): list(noise_accuracy_at(run, epoch).values()) for epoch in sorted(measured)},
             "final_accuracy": None if final is None else list(final.values())}
    if last.get("attacks"):
        attacked = {epoch: {attack: list(found.values()) for attack, found in attack_accuracy_at(run, epoch).items()}
                    for epoch in sorted(measured)}
        entry["attacks"] = {**last["attacks"], "accuracy": {str(epoch): found for epoch, found in attacked.items()
                                                            if found},
                            "final_accuracy": attacked.get(run.last_epoch) or None}
    return {"robustness": entry}
