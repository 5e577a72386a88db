"""Write a probe report into a folder: tables as runs complete, figures and pages at the end.

Layout of the folder::

    dynamics.csv     run,epoch,layer,metric,value (every number of every run)
    summary.json     per run: model, dataset, settings, accuracy, last-epoch numbers, timings
    figures/*.png    comparison.png, depth_<metric>.png, epochs_<metric>.png, persistence_<run>.png
    report.html      self-contained page (figures embedded)
    report.md        the same, figures linked

Every file is written atomically, so an interrupted run never leaves a half-written file; a
report written again into the same folder replaces the earlier one (its stale figures too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnconv_pl.atomic import atomic_write_text
from attnconv_pl.reports.figures import ReportFigure, report_figures, save_figure
from attnconv_pl.reports.html import render_html
from attnconv_pl.reports.markdown import render_markdown
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.summary import write_summary
from attnconv_pl.reports.tables import write_dynamics_csv

FIGURES_FOLDER = "figures"


def write_tables(out_dir: Path, runs: list[ProbedRun], context: dict[str, Any]) -> None:
    """``dynamics.csv`` and ``summary.json`` of the runs probed so far (rewritten after each run)."""
    write_dynamics_csv(out_dir / "dynamics.csv", runs)
    write_summary(out_dir / "summary.json", runs, context)


def write_figures(out_dir: Path, runs: list[ProbedRun]) -> list[ReportFigure]:
    """Save every figure of the report under ``out_dir/figures/`` and remove the PNGs an earlier
    report left there; returns the figures in report order."""
    saved = []
    for entry, figure in report_figures(runs):
        save_figure(figure, out_dir / FIGURES_FOLDER / entry.file_name)
        saved.append(entry)
    current = {entry.file_name for entry in saved}
    for stale in (out_dir / FIGURES_FOLDER).glob("*.png"):
        if stale.name not in current:
            stale.unlink()
    return saved


def write_report(out_dir: Path, runs: list[ProbedRun], context: dict[str, Any]) -> list[ReportFigure]:
    """Figures, ``report.html`` and ``report.md`` of ``runs``; returns the figures."""
    figures = write_figures(out_dir, runs)
    atomic_write_text(out_dir / "report.html", render_html(runs, figures, out_dir / FIGURES_FOLDER, context))
    atomic_write_text(out_dir / "report.md", render_markdown(runs, figures, context))
    return figures
