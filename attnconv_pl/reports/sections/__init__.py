"""The report's sections, one module per analysis that contributes content.

Each module exposes builders ``(runs, figures) -> list[Section]`` (empty when the runs hold
nothing to show); ``reports/report.py`` lists them in report order in ``SECTION_BUILDERS``.
"""

from __future__ import annotations

from typing import Callable

from attnconv_pl.reports.document import Code, Figures, Section, Subsection
from attnconv_pl.reports.figures import ReportFigure, ReportSection, report_sections
from attnconv_pl.reports.records import ProbedRun

SectionBuilder = Callable[[list[ProbedRun], list[ReportFigure]], list[Section]]


def figure_section(section: ReportSection) -> Section:
    """A section of figures: one sub-heading (the metric, as code) per metric, figures without a
    metric directly under the title."""
    blocks = [Subsection((Code(metric),), (Figures(tuple(figures)),)) if metric else Figures(tuple(figures))
              for metric, figures in section.figures_by_metric.items()]
    return Section(section.key, section.title, tuple(blocks))


def figure_sections(figures: list[ReportFigure], keys: set[str]) -> list[Section]:
    """The figure sections (see :func:`~attnconv_pl.reports.figures.report_sections`) whose key is
    in ``keys``, in report order."""
    return [figure_section(section) for section in report_sections(figures) if section.key in keys]
