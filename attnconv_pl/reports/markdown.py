"""``report.md``: the report's structure as Markdown, figures linked from ``figures/``."""

from __future__ import annotations

from typing import Any

from attnconv_pl.reports.comparison import comparison_metrics
from attnconv_pl.reports.figures import ReportFigure, report_sections
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.tables import RECORDS_NOTE, has_records, last_epoch_table, probed_table, records_table


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), line(["---"] * len(header)), *map(line, rows), ""]


def render_markdown(runs: list[ProbedRun], figures: list[ReportFigure], context: dict[str, Any]) -> str:
    """The report as Markdown (see :func:`attnconv_pl.reports.html.render_html` for the arguments;
    figures are linked as ``figures/<name>.png``)."""
    lines = ["# Probe report", "", f"{context.get('created', '')} · `{context.get('command', '')}`", "",
             "## What was probed", "", *_table(*probed_table(runs))]
    if has_records(runs):
        lines += ["### Training records and robustness", "", *_table(*records_table(runs)), RECORDS_NOTE, ""]
    for section in report_sections(figures):
        lines += [f"## {section.title}", ""]
        for metric, metric_figures in section.figures_by_metric.items():
            if metric:
                lines += [f"### `{metric}`", ""]
            lines += [f"![{figure.caption}](figures/{figure.file_name})" for figure in metric_figures] + [""]
    lines += ["## Last-epoch table", "", *_table(*last_epoch_table(runs, comparison_metrics(runs))),
              "Every number of every epoch: [dynamics.csv](dynamics.csv); per run: [summary.json](summary.json).", ""]
    return "\n".join(lines)
