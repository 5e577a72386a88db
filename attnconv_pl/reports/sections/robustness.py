"""The robustness section: accuracy under Gaussian input noise against its level, per model
(the numbers per run are in the training-records table), and the run's ``robustness`` entry of
``summary.json``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from matplotlib.figure import Figure

from attnconv_pl.reports.document import Section
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.robustness import final_noise_accuracy, noise_accuracy_at, robustness_figure
from attnconv_pl.reports.sections import family_sections


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The robustness figure, when any run was evaluated under noise at its last epoch."""
    if any(final_noise_accuracy(run) is not None for run in runs):
        yield ReportFigure("robustness", "robustness",
                           "Accuracy under additive Gaussian noise on the normalised inputs against its standard "
                           "deviation σ, at each run's last probed epoch, per model; error bars: one standard "
                           "deviation over seeds."), robustness_figure(runs)


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The robustness figure's section."""
    return family_sections("robustness", figures)


def summary(run: ProbedRun) -> dict[str, Any]:
    """``robustness``: None when not evaluated, else ``noise_levels``, the inputs (``dataset``,
    ``split``, ``inputs``, ``seed``), ``accuracy`` (``{epoch: [accuracy per level]}``) and
    ``final_accuracy`` (at the last probed epoch, None when not evaluated then)."""
    measured = run.artifacts.get("robustness", {})
    if not measured:
        return {"robustness": None}
    last = measured[max(measured)]
    final = final_noise_accuracy(run)
    return {"robustness": {
        "noise_levels": list(last["noise_levels"]), **last.get("inputs", {}),
        "accuracy": {str(epoch): list(noise_accuracy_at(run, epoch).values()) for epoch in sorted(measured)},
        "final_accuracy": None if final is None else list(final.values())}}
