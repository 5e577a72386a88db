"""The training sections: the runs' training curves (loss and accuracy from their
``metrics.csv``), then per run its training records and its accuracy under input noise at the
last probed epoch; and the run's ``training`` entry of ``summary.json``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from matplotlib.figure import Figure

from attnconv_pl.reports.document import Paragraph, Section, Table
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import figure_sections
from attnconv_pl.reports.tables import (
    NOISE_NOTE,
    RECORDS_NOTE,
    final_records,
    has_records,
    has_robustness,
    records_table,
)
from attnconv_pl.reports.training_curves import has_curves, training_curves_figure

CURVES = ("training", "Training curves")


def figures(runs: list[ProbedRun]) -> Iterator[tuple[ReportFigure, Figure]]:
    """The training curves, when any run has a ``metrics.csv``."""
    if has_curves(runs):
        yield (ReportFigure("training_curves", CURVES[0],
                            "Training (solid: mean over the epoch's batches) and validation (dashed) loss and accuracy "
                            "from each run's metrics.csv against completed epochs, on the axis of the dynamics below "
                            "(ticks: the probed epochs); per model the mean over seeds, bands: ± one sd."),
               training_curves_figure(runs))


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The training curves, then the records table and what its columns mean (when any run has
    records or robustness numbers; robustness is named only when there are robustness numbers)."""
    found = figure_sections(figures, [CURVES])
    if not has_records(runs):
        return found
    header, rows = records_table(runs)
    trained = any(final_records(run) is not None for run in runs)
    title = " and ".join(["Training records"] * trained + ["robustness"] * has_robustness(runs)).capitalize()
    notes = " ".join([RECORDS_NOTE] * trained + [NOISE_NOTE] * has_robustness(runs))
    return [*found, Section("records", title, (Table.of(header, rows, range(2, len(header))), Paragraph((notes,))))]


def summary(run: ProbedRun) -> dict[str, Any]:
    """``training``: the records at the last probed epoch with where they come from
    (``metrics_csv``) and the run's ``loss_floor``; None without records."""
    found = run.final_artifacts("training_records")
    if found.get("records") is None:
        return {"training": None}
    return {"training": {**found["records"].as_dict(), "metrics_csv": found["metrics_csv"],
                         "loss_floor": found["loss_floor"]}}
