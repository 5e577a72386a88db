"""The dynamics sections: the comparison of models, one section per metric family (depth profiles
per group, each metric against epoch) and the persistence diagrams of each run (folded, a folded
sub-heading per run when there are several)."""

from __future__ import annotations

from collections.abc import Iterator

from matplotlib.figure import Figure

from attnconv_pl.reports.comparison import comparison_figure, comparison_metrics
from attnconv_pl.reports.diagrams import MAX_DIAGRAM_EPOCHS, persistence_epochs_figure
from attnconv_pl.reports.document import Code, Figures, Paragraph, Section, Subsection
from attnconv_pl.reports.figures import ReportFigure, file_stem
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import family_figures, family_sections, figure_sections

COMPARISON = ("comparison", "Comparison")
PERSISTENCE = ("persistence", "Persistence diagrams")


PERSISTENCE_NOTE = (
    "Each run's output persistence diagrams (H0, H1, ...: one point (birth, death) per feature) at the probed "
    f"epochs with topology: every one up to {MAX_DIAGRAM_EPOCHS}, else {MAX_DIAGRAM_EPOCHS} spread evenly from "
    "the first to the last; ", Code("probe.py --diagram_epochs all"), " draws every one, ",
    Code("--diagram_epochs 0 10 30"), " those epochs.")


def persistence_runs(runs: list[ProbedRun]) -> list[tuple[str, ProbedRun]]:
    """The runs with diagrams and the distinct name of each one's persistence figure."""
    named: list[tuple[str, ProbedRun]] = []
    for run in runs:
        if run.diagrams:
            name = f"persistence_{file_stem(run.label)}"
            named.append((name if name not in dict(named) else f"{name}_{len(named)}", run))
    return named


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The comparison figure (when compactness or stability was probed), the metrics' figures and
    each run's output persistence diagrams at the epochs it holds them for."""
    if comparison_metrics(runs):
        yield ReportFigure(COMPARISON[0], COMPARISON[0],
                           "Compactness (variance, intrinsic dimension) and stability (input-to-output diagram "
                           "distances W1, W2, W∞) against depth at the last epoch, per model; error bars: one "
                           "standard deviation over seeds."), comparison_figure(runs)
    yield from family_figures("dynamics", runs)
    for name, run in persistence_runs(runs):
        epochs = ", ".join(map(str, sorted(run.diagrams)))
        yield (ReportFigure(name, PERSISTENCE[0], f"Output persistence diagrams of {run.label} at epochs {epochs}: "
                                                  "a row per epoch, a column per layer on one scale."),
               persistence_epochs_figure(run.diagrams, [layer for layer in run.layers if any(
                   layer in found for found in run.diagrams.values())], f"{run.label}: output persistence diagrams"))


def persistence_section(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The persistence diagrams, folded: the figure of one run, or a folded sub-heading per run."""
    by_name = {figure.name: figure for figure in figures if figure.section == PERSISTENCE[0]}
    shown = [(run, by_name[name]) for name, run in persistence_runs(runs) if name in by_name]
    if not shown:
        return []
    blocks = ([Figures((shown[0][1],))] if len(shown) == 1 else
              [Subsection((run.label,), (Figures((figure,)),), folded=True) for run, figure in shown])
    return [Section(PERSISTENCE[0], PERSISTENCE[1], (Paragraph(PERSISTENCE_NOTE), *blocks), folded=True)]


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The comparison, the metric families' sections (depth profiles, then a folded sub-heading
    per metric), the persistence diagrams (folded)."""
    return (figure_sections(figures, [COMPARISON]) + family_sections("dynamics", figures)
            + persistence_section(runs, figures))
