"""Per-epoch series of a group of runs (seeds) as a mean line and a ± one standard deviation
band, on the report's one epoch axis: completed training epochs, 0 = initialisation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from attnconv_pl.reports.comparison import mean_and_std
from attnconv_pl.reports.records import ProbedRun, runs_by_group

EPOCH_LABEL = "completed epochs (0 = initialisation)"
MAX_EPOCH_TICKS = 12
"""Up to this many probed epochs each get a tick; more get evenly spaced integer ticks."""

Series = Callable[[ProbedRun], tuple[list[int], list[float]]]
"""What a band is made of: a run's ``(epochs, values)``."""


@dataclass(frozen=True)
class Band:
    """One group's series over epochs, summarised over its runs.

    Attributes:
        group: the group's label.
        epochs: (E,) the completed epochs any of its runs has a value at, ascending.
        mean: (E,) mean over the runs with a finite value there.
        std: (E,) sample standard deviation (ddof=1) over those runs; 0 where fewer than two.
        runs: number of the group's runs with any value (seeds).
    """

    group: str
    epochs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    runs: int

    @property
    def label(self) -> str:
        return f"{self.group} ({self.runs} seed{'s' if self.runs > 1 else ''})"


def group_bands(runs: list[ProbedRun], series: Series) -> list[Band]:
    """The band of every group with any value of ``series``, in the order groups first appear."""
    bands = []
    for group, members in runs_by_group(runs).items():
        found = [dict(zip(*series(run))) for run in members]
        found = [values for values in found if values]
        if not found:
            continue
        epochs = sorted({epoch for values in found for epoch in values})
        mean, std = mean_and_std(np.array([[values.get(epoch, np.nan) for epoch in epochs] for values in found],
                                          dtype=float))
        bands.append(Band(group, np.array(epochs), mean, std, len(found)))
    return bands


def draw_band(axis: Axes, band: Band, color: str, linestyle: str = "-", label: str | None = None) -> None:
    """The mean line (a marker per epoch) and, with several runs, the mean ± sd band around it."""
    axis.plot(band.epochs, band.mean, marker="o", markersize=3, linewidth=1.2, color=color, linestyle=linestyle,
              label=label)
    if band.runs > 1:
        axis.fill_between(band.epochs, band.mean - band.std, band.mean + band.std, color=color, alpha=0.2,
                          linewidth=0)


def probed_epochs(runs: list[ProbedRun]) -> list[int]:
    """Every run's probed epochs, ascending."""
    return sorted({epoch for run in runs for epoch in run.epochs})


def set_epoch_ticks(axis: Axes, epochs: list[int]) -> None:
    """x ticks on ``epochs`` (the probed ones) when there are at most :data:`MAX_EPOCH_TICKS`,
    else evenly spaced integer ticks."""
    if 0 < len(epochs) <= MAX_EPOCH_TICKS:
        axis.set_xticks(epochs)
    else:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
