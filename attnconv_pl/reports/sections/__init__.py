"""The report's sections: one module per analysis that draws more than its metrics' figures,
named as the analysis (``reports/sections/<analysis>.py``).

A section module may expose ``figures(runs)``, yielding ``(ReportFigure, Figure)`` pairs in
report order (its own figures and, where it places them, :func:`family_figures`);
``sections(runs, figures) -> list[Section]``, its part of the report (empty when the runs hold
nothing to show; :func:`family_sections` gives its metrics' figure sections); and
``summary(run) -> dict``, its entries of the run's ``summary.json`` (the same keys whether or not
the analysis ran, None as their value when it did not). Every analysis's per-layer metrics get
depth profiles (a figure per metric family and group) and a figure against epoch per metric
without any code of its own; an analysis without a section module shows just those.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Optional

from matplotlib.figure import Figure

from attnconv_pl.analyses import list_analyses, load_analysis
from attnconv_pl.reports.document import Code, Figures, Paragraph, Section, Subsection
from attnconv_pl.reports.figures import ReportFigure, ReportSection, metric_figures, report_sections
from attnconv_pl.reports.records import ProbedRun, metric_section, metric_title, report_metrics

SectionBuilder = Callable[[list[ProbedRun], list[ReportFigure]], list[Section]]
OTHER = ("other", "Other metrics")
"""The section of metrics no analysis declares."""


def section_module(analysis: str) -> Optional[ModuleType]:
    """The section module of ``analysis`` (None when it has none)."""
    try:
        return importlib.import_module(f"{__name__}.{analysis}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{analysis}":
            raise
        return None


def family_titles(analysis: str) -> list[tuple[str, str]]:
    """``(key, title)`` of the analysis's metric families, in its order."""
    return [(family.key, family.title) for family in load_analysis(analysis).families]


def family_sections(analysis: str, figures: list[ReportFigure]) -> list[Section]:
    """The figure sections of the analysis's metric families (one sub-heading per metric)."""
    return [figure_section(section) for section in report_sections(figures, family_titles(analysis))]


PER_METRIC_NOTE = "Each metric against completed epochs, one panel per layer:"


def figure_section(section: ReportSection, folded: bool = False) -> Section:
    """A section of figures: figures without a metric (the depth profiles) directly under the
    title, then one folded sub-heading (the metric, as code, and its name) per metric."""
    unnamed = [Figures(tuple(figures)) for metric, figures in section.figures_by_metric.items() if not metric]
    per_metric = [Subsection((Code(metric), f" {metric_title(metric)}"), (Figures(tuple(figures)),), folded=True)
                  for metric, figures in section.figures_by_metric.items() if metric]
    note = [Paragraph((PER_METRIC_NOTE,))] if per_metric else []
    return Section(section.key, section.title, tuple([*unnamed, *note, *per_metric]), folded)


def figure_sections(figures: list[ReportFigure], titles: list[tuple[str, str]], folded: bool = False) -> list[Section]:
    """The sections ``titles`` (``(key, title)``) that hold any of ``figures``, in that order
    (``folded``: shown closed in HTML)."""
    return [figure_section(section, folded) for section in report_sections(figures, titles)]


def family_figures(analysis: str, runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The figures of the analysis's metrics the runs hold (against depth and against epoch)."""
    keys = {key for key, _ in family_titles(analysis)}
    yield from metric_figures(runs, [metric for metric in report_metrics(runs) if metric_section(metric) in keys])


def report_figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """Every figure of the report in report order, built one at a time: per analysis (in
    :data:`ANALYSES` order) its module's ``figures``, else its metrics' figures; then the
    metrics of no analysis."""
    for analysis in list_analyses():
        module = section_module(analysis)
        if module is not None and hasattr(module, "figures"):
            yield from module.figures(runs)
        else:
            yield from family_figures(analysis, runs)
    yield from metric_figures(runs, [metric for metric in report_metrics(runs) if metric_section(metric) == OTHER[0]])


def report_body(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The analyses' sections in :data:`ANALYSES` order (a module's ``sections``, else its metric
    families' figures), then the metrics of no analysis."""
    body: list[Section] = []
    for analysis in list_analyses():
        module = section_module(analysis)
        if module is not None and hasattr(module, "sections"):
            body += module.sections(runs, figures)
        else:
            body += family_sections(analysis, figures)
    return body + figure_sections(figures, [OTHER])
