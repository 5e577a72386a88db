"""The training curves of the runs (loss and accuracy from each run's ``metrics.csv``, the rows up
to its last probed epoch that the training records analysis read) on the dynamics' epoch axis:
completed epochs, ticks on the probed ones; per group the mean over its runs (seeds) and a band of
± one sample standard deviation."""

from __future__ import annotations

import math

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from attnconv_pl.reports.bands import EPOCH_LABEL, draw_band, group_bands, probed_epochs, set_epoch_ticks
from attnconv_pl.reports.layout import legend_below, set_margins
from attnconv_pl.reports.records import ProbedRun, runs_by_group

PANELS = (
    ("Loss", "cross-entropy (nats)", ("train_loss", "val_loss")),
    ("Accuracy", "top-1 accuracy (fraction)", ("train_acc", "val_acc")),
)
"""``(title, y-axis label, (training column, validation column))`` of each panel."""
STYLES = {"train": "-", "val": "--"}
"""Line style of the training (epoch mean over its batches) and validation curves."""
KINDS = {"train": "training (epoch mean)", "val": "validation"}


def curve_rows(run: ProbedRun) -> list[dict[str, float]]:
    """The run's ``metrics.csv`` rows up to its last probed epoch (artifact ``curves`` of its
    training records there; [] without them)."""
    return run.final_artifacts("training_records").get("curves", [])


def curve(run: ProbedRun, column: str) -> tuple[list[int], list[float]]:
    """``(completed epochs, values)`` of a ``metrics.csv`` column over the run's rows that have it."""
    rows = [(int(row["epoch"]), float(row[column])) for row in curve_rows(run)
            if math.isfinite(float(row.get(column, math.nan)))]
    return [epoch for epoch, _ in rows], [value for _, value in rows]


def has_curves(runs: list[ProbedRun]) -> bool:
    """Whether any run has ``metrics.csv`` rows."""
    return any(curve_rows(run) for run in runs)


def training_curves_figure(runs: list[ProbedRun]) -> Figure:
    """Loss and accuracy against completed epochs, training solid and validation dashed, a colour
    per group; x from initialisation (0) to the last epoch trained or probed."""
    figure = Figure(figsize=(9.6, 3.2))
    axes = figure.subplots(1, len(PANELS), squeeze=False)[0]
    groups = list(runs_by_group(runs))
    epochs = probed_epochs(runs)
    last = max([*epochs, *(int(row["epoch"]) for run in runs for row in curve_rows(run))])
    for axis, (title, unit, columns) in zip(axes, PANELS):
        for column in columns:
            for band in group_bands(runs, lambda run, column=column: curve(run, column)):
                draw_band(axis, band, f"C{groups.index(band.group)}", STYLES[column.split("_")[0]],
                          label=band.label)
        axis.set_title(title, fontsize=9)
        axis.set_ylabel(unit, fontsize=8)
        axis.set_xlabel(EPOCH_LABEL, fontsize=8)
        axis.set_xlim(-0.3, last + 0.3)
        set_epoch_ticks(axis, epochs)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    entries = {label: Line2D([], [], color=handle.get_color(), marker="o", markersize=3)
               for handle, label in zip(*axes[0].get_legend_handles_labels())}
    entries |= {label: Line2D([], [], color="0.3", linestyle=STYLES[kind]) for kind, label in KINDS.items()}
    legend = legend_below(figure, list(entries.values()), list(entries))
    figure.suptitle("Training curves from metrics.csv" + (", mean ± sd over seeds" if any(
        len(members) > 1 for members in runs_by_group(runs).values()) else ""), fontsize=10)
    set_margins(figure, left=0.7, bottom=0.6 + legend, top=0.5, wspace=0.8)
    return figure
