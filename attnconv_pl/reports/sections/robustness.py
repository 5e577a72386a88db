"""The robustness section: accuracy under Gaussian input noise against its level, per model
(the numbers per run are in the training-records table)."""

from __future__ import annotations

from collections.abc import Iterator

from matplotlib.figure import Figure

from attnconv_pl.reports.document import Section
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.robustness import robustness_figure
from attnconv_pl.reports.sections import figure_sections

TITLE = ("robustness", "Robustness: accuracy under Gaussian input noise")


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The robustness figure, when any run was evaluated under noise."""
    if any(run.final_robustness() is not None for run in runs):
        yield ReportFigure("robustness", TITLE[0],
                           "Accuracy under additive Gaussian noise on the normalised inputs against its standard "
                           "deviation σ, at each run's last probed epoch, per model; error bars: one standard "
                           "deviation over seeds."), robustness_figure(runs)


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The robustness figure's section."""
    return figure_sections(figures, [TITLE])
