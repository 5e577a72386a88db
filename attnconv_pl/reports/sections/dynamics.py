"""The dynamics sections: the comparison of models, one section per metric family (depth profiles
per group, each metric against epoch) and the persistence diagrams of each run."""

from __future__ import annotations

from collections.abc import Iterator

from matplotlib.figure import Figure

from attnconv_pl.reports.comparison import comparison_figure, comparison_metrics
from attnconv_pl.reports.diagrams import persistence_epochs_figure
from attnconv_pl.reports.document import Section
from attnconv_pl.reports.figures import ReportFigure, file_stem
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import family_figures, family_sections, figure_sections

COMPARISON = ("comparison", "Comparison")
PERSISTENCE = ("persistence", "Persistence diagrams")


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The comparison figure (when compactness or stability was probed), the metrics' figures and
    each run's output persistence diagrams at its first and last epochs with topology."""
    if comparison_metrics(runs):
        yield ReportFigure(COMPARISON[0], COMPARISON[0],
                           "Compactness (variance, intrinsic dimension) and stability (input-to-output diagram "
                           "distances W1, W2, W∞) against depth at the last epoch, per model; error bars: one "
                           "standard deviation over seeds."), comparison_figure(runs)
    yield from family_figures("dynamics", runs)
    names: set[str] = set()
    for run in runs:
        if run.diagrams:
            name = f"persistence_{file_stem(run.label)}"
            name = name if name not in names else f"{name}_{len(names)}"
            names.add(name)
            epochs = " and ".join(map(str, sorted(run.diagrams)))
            yield (ReportFigure(name, PERSISTENCE[0], f"Output persistence diagrams of {run.label}, epochs {epochs}."),
                   persistence_epochs_figure(run.diagrams, run.layers, f"{run.label}: output persistence diagrams"))


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The comparison, the metric families' sections (depth profiles, then a folded sub-heading
    per metric), the persistence diagrams (folded)."""
    return (figure_sections(figures, [COMPARISON]) + family_sections("dynamics", figures)
            + figure_sections(figures, [PERSISTENCE], folded=True))
