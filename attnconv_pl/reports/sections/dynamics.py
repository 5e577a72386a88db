"""The dynamics sections: the comparison of models, one section per metric family (each metric
against depth and against epoch) and the persistence diagrams of each run."""

from __future__ import annotations

from attnconv_pl.reports.document import Section
from attnconv_pl.reports.figures import ReportFigure, report_sections
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import figure_section, figure_sections


def comparison_sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The comparison figure's section (compactness and stability against depth, per model)."""
    return figure_sections(figures, {"comparison"})


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The metric families' sections (the families of every analysis, then ``other``), a
    sub-heading per metric, then the persistence diagrams."""
    return [figure_section(section) for section in report_sections(figures)
            if section.key == "persistence" or any(section.figures_by_metric)]
