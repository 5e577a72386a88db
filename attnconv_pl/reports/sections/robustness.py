"""The robustness section: accuracy under Gaussian input noise against its level, per model
(the numbers per run are in the training-records table)."""

from __future__ import annotations

from attnconv_pl.reports.document import Section
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import figure_sections


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The robustness figure's section, when any run was evaluated under noise."""
    return figure_sections(figures, {"robustness"})
