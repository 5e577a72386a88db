"""Write a probe report into a folder: tables as runs complete, figures and pages at the end.

Layout of the folder::

    dynamics.csv     run,epoch,layer,metric,value (every number of every run)
    summary.json     per run: model, dataset, settings, accuracy, last-epoch numbers, timings
    figures/*.png    training_curves.png, depth_<family>_<group>.png (depth profiles, a line per
                     probed epoch), epochs_<metric>.png (a panel per layer, mean ± sd bands per
                     group), and each analysis's own (comparison.png, ...)
    report.html      self-contained page (figures embedded; collapsible sections, contents)
    report.md        the same, figures linked

Both pages render one :class:`~attnconv_pl.reports.document.Document`: what was probed, the
analyses' sections (``reports/sections``, in the analyses' order: the training curves and
records first), then the last-epoch table.

Every file is written atomically, so an interrupted run never leaves a half-written file; a
report written again into the same folder replaces the earlier one (its stale figures too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attnconv_pl.analyses import list_analyses
from attnconv_pl.io.atomic import atomic_write_text
from attnconv_pl.io.console import Progress
from attnconv_pl.io.epoch_table import DYNAMICS_FILE
from attnconv_pl.reports.comparison import comparison_metrics
from attnconv_pl.reports.document import Code, Document, Link, Paragraph, Section, Table
from attnconv_pl.reports.figures import ReportFigure, family_titles, save_figure
from attnconv_pl.reports.html import render_html
from attnconv_pl.reports.markdown import render_markdown
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import report_body, report_figures, section_module
from attnconv_pl.reports.summary import write_summary
from attnconv_pl.reports.tables import last_epoch_table, probed_table, write_dynamics_csv

FIGURES_FOLDER = "figures"


def write_tables(out_dir: Path, runs: list[ProbedRun], context: dict[str, Any]) -> None:
    """``dynamics.csv`` and ``summary.json`` of the runs probed so far (rewritten after each run)."""
    write_dynamics_csv(out_dir / DYNAMICS_FILE, runs)
    write_summary(out_dir / "summary.json", runs, context)


def write_figures(out_dir: Path, runs: list[ProbedRun], progress: bool = False) -> list[ReportFigure]:
    """Save every figure of the report under ``out_dir/figures/`` and remove the PNGs an earlier
    report left there; returns the figures in report order. ``progress``: show which figure is
    drawn (a bar on a terminal; in a log a line as each section's figures begin)."""
    saved: list[ReportFigure] = []
    titles = family_titles()  # the sections of analyses' own figures are shown by their key
    with Progress("figures", unit="figures", enabled=progress) as shown:
        for entry, figure in report_figures(runs):
            new_section = not saved or saved[-1].section != entry.section
            shown.step(f"{titles.get(entry.section, entry.section)}: {entry.file_name}", log=new_section)
            save_figure(figure, out_dir / FIGURES_FOLDER / entry.file_name)
            saved.append(entry)
            shown.update()
        shown.write(f"figures: {len(saved)} drawn in {shown.elapsed()}")
    current = {entry.file_name for entry in saved}
    for stale in (out_dir / FIGURES_FOLDER).glob("*.png"):
        if stale.name not in current:
            stale.unlink()
    return saved


def write_analysis_files(out_dir: Path, runs: list[ProbedRun]) -> None:
    """The files analyses keep beside the report (a section module's ``write_files``)."""
    for analysis in list_analyses():
        module = section_module(analysis)
        if module is not None and hasattr(module, "write_files"):
            module.write_files(out_dir, runs)


def probed_section(runs: list[ProbedRun]) -> Section:
    """What was probed: a row per run, and how its checkpoints were probed."""
    return Section("probed", "What was probed", (
        Table.of(*probed_table(runs), numeric_columns=range(6, 7)),
        Paragraph(("Each run's checkpoints were probed in epoch order through the training callback's pipeline (",
                   Code("callbacks.FeatureDynamics"), "): the same probe set, projections and probes, so with "
                   "default options the numbers equal the ones the run logged.")),
    ))


def last_epoch_section(runs: list[ProbedRun]) -> Section:
    """The compared metrics at each run's last epoch, per layer, and where every number is."""
    header, rows = last_epoch_table(runs, comparison_metrics(runs))
    return Section("table", "Last-epoch table", (
        Table.of(header, rows, range(3, len(header))),
        Paragraph(("Every number of every epoch: ", Link(DYNAMICS_FILE, DYNAMICS_FILE),
                   " (columns run, epoch, layer, metric, value); per run: ", Link("summary.json", "summary.json"),
                   ".")),
    ))


def build_document(runs: list[ProbedRun], figures: list[ReportFigure], context: dict[str, Any]) -> Document:
    """The report of ``runs`` with ``figures`` (in report order); ``context`` holds ``command`` (the
    command line) and ``created`` (a timestamp)."""
    sections = [probed_section(runs), *report_body(runs, figures), last_epoch_section(runs)]
    return Document("Probe report", ", ".join(run.label for run in runs), context.get("created", ""),
                    context.get("command", ""), tuple(sections))


def write_report(out_dir: Path, runs: list[ProbedRun], context: dict[str, Any],
                 progress: bool = False) -> list[ReportFigure]:
    """Figures, ``report.html`` and ``report.md`` of ``runs``; returns the figures. ``progress``:
    show the figures' progress on stderr (see :func:`write_figures`)."""
    figures = write_figures(out_dir, runs, progress)
    write_analysis_files(out_dir, runs)
    document = build_document(runs, figures, context)
    atomic_write_text(out_dir / "report.html", render_html(document, out_dir / FIGURES_FOLDER))
    atomic_write_text(out_dir / "report.md", render_markdown(document))
    return figures
