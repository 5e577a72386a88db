"""``metrics.csv`` (one row per training epoch) and the records of a run taken from it.

``callbacks.EpochMetrics`` writes ``<run_dir>/metrics.csv`` after every epoch, columns
:data:`COLUMNS`; epochs count completed training epochs (1, 2, ...), as the checkpoints do.
The records compare how fast and how well runs train (arXiv 2412.18288):

- best validation accuracy and the first epoch that reached it;
- epochs to a target training loss: the first epoch whose mean training loss is at or below
  the target (:data:`DEFAULT_TARGET_LOSS`, **our choice**), None when no epoch reached it;
- the training seconds up to that epoch (sum of ``epoch_seconds``).

Functions here are pure: rows in, numbers out; a missing value is NaN and never wins.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from attnconv_pl.analyses.base import Analysis, AnalysisResult, CheckpointInputs, MetricFamily, check_field_types
from attnconv_pl.errors import ProbeInputError

METRICS_FILE = "metrics.csv"

LOGGED_NAMES = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "val_loss": "val/loss",
    "val_acc": "val/acc",
    "val_acc_top5": "val/acc_top5",
}
"""Column of ``metrics.csv`` -> name ``ClassifierModule`` logs it under (epoch means)."""

COLUMNS = ("epoch", *LOGGED_NAMES, "epoch_seconds")
"""``epoch``, the epoch means of :data:`LOGGED_NAMES` (losses: mean cross-entropy in nats;
accuracies: fractions in [0, 1]; ``val_*`` NaN in an epoch without validation) and
``epoch_seconds``, wall-clock seconds from the epoch's start to the end of its validation."""

DEFAULT_TARGET_LOSS = 1.0
"""Target mean training loss (cross-entropy, nats) of "epochs to target loss" (**our choice**):
reachable by every config here, label smoothing included (see :func:`loss_floor`)."""

MetricsRow = Mapping[str, float]
"""One epoch of ``metrics.csv``: ``{column: value}`` with ``epoch`` an int, NaN when missing."""


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.csv`` in epoch order (numbers parsed, ``nan`` as NaN).

    Raises:
        ValueError: the file is not text, lacks the ``epoch`` column, or a cell is not a number; the
            message names the file (and the line), never its content.
    """
    not_metrics = f"{path} is not a metrics.csv (its first line is not a header with the columns {', '.join(COLUMNS)})"
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            if "epoch" not in header:
                raise ValueError(not_metrics)
            rows = []
            for row in reader:
                try:
                    rows.append({column: int(row["epoch"]) if column == "epoch" else float(row[column] or "nan")
                                 for column in header})
                except (TypeError, ValueError):
                    raise ValueError(f"line {reader.line_num} of {path} holds a cell that is not a number") from None
    except (UnicodeDecodeError, csv.Error):
        raise ValueError(not_metrics) from None
    return sorted(rows, key=lambda row: row["epoch"])


def _value(row: MetricsRow, column: str) -> float:
    value = row.get(column, math.nan)
    return math.nan if value is None else float(value)


def best_val_accuracy(rows: Sequence[MetricsRow]) -> Optional[tuple[int, float]]:
    """``(epoch, val_acc)`` of the highest validation accuracy (the earliest epoch on ties),
    None when no row has one."""
    scored = [(row["epoch"], _value(row, "val_acc")) for row in rows]
    scored = [(epoch, value) for epoch, value in scored if not math.isnan(value)]
    if not scored:
        return None
    best = max(value for _, value in scored)
    return min(epoch for epoch, value in scored if value == best), best


def epochs_to_target_loss(rows: Sequence[MetricsRow], target: float) -> Optional[int]:
    """The first epoch whose mean training loss is <= ``target``; None when none is."""
    reached = [row["epoch"] for row in rows if _value(row, "train_loss") <= target]
    return min(reached) if reached else None


def seconds_to_epoch(rows: Sequence[MetricsRow], epoch: int) -> Optional[float]:
    """Training seconds of epochs 1..``epoch`` (sum of ``epoch_seconds``); None when a row of
    those epochs is missing or has no time."""
    seconds = {row["epoch"]: _value(row, "epoch_seconds") for row in rows}
    wanted = [seconds.get(e, math.nan) for e in range(1, epoch + 1)]
    return None if any(math.isnan(s) for s in wanted) else float(sum(wanted))


def loss_floor(label_smoothing: float, num_classes: int) -> float:
    """The smallest mean cross-entropy a classifier can reach with label smoothing ``eps``:
    the entropy of the smoothed target (1 - eps + eps/K on the label, eps/K elsewhere), 0 without
    smoothing. A target loss at or below it is never reached."""
    if label_smoothing <= 0:
        return 0.0
    on, off = 1 - label_smoothing + label_smoothing / num_classes, label_smoothing / num_classes
    return float(-(on * math.log(on) + (num_classes - 1) * off * math.log(off)))


@dataclass(frozen=True)
class TrainingRecords:
    """The records of one run (see the module docstring). Epochs count completed epochs.

    Attributes:
        epochs: the last epoch in ``metrics.csv``.
        target_loss: the target mean training loss.
        epochs_to_target_loss: first epoch with training loss <= target (None: not reached).
        seconds_to_target_loss: training seconds up to that epoch (None: not reached or unknown).
        best_val_acc, best_val_acc_epoch: highest validation accuracy and its first epoch.
        final_val_acc, final_train_loss: the last epoch's values.
    """

    epochs: int
    target_loss: float
    epochs_to_target_loss: Optional[int]
    seconds_to_target_loss: Optional[float]
    best_val_acc: Optional[float]
    best_val_acc_epoch: Optional[int]
    final_val_acc: Optional[float]
    final_train_loss: Optional[float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def training_records(rows: Sequence[MetricsRow], target_loss: float = DEFAULT_TARGET_LOSS) -> TrainingRecords:
    """The records of a run from its ``metrics.csv`` rows (in any order; at least one).

    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("metrics.csv has no rows yet: the run has not completed an epoch")
    rows = sorted(rows, key=lambda row: row["epoch"])
    last = rows[-1]
    best = best_val_accuracy(rows)
    reached = epochs_to_target_loss(rows, target_loss)

    def known(value: float) -> Optional[float]:
        return None if math.isnan(value) else value

    return TrainingRecords(
        epochs=int(last["epoch"]),
        target_loss=float(target_loss),
        epochs_to_target_loss=reached,
        seconds_to_target_loss=seconds_to_epoch(rows, reached) if reached is not None else None,
        best_val_acc=best[1] if best else None,
        best_val_acc_epoch=best[0] if best else None,
        final_val_acc=known(_value(last, "val_acc")),
        final_train_loss=known(_value(last, "train_loss")),
    )


@dataclass(frozen=True)
class TrainingRecordsSettings:
    """What the training records measure; the single source of ``probe.py``'s default.

    Args:
        target_loss: epochs to target loss is the first epoch whose mean training loss is <= this
            (cross-entropy in nats, finite and > 0).
    """

    target_loss: float = DEFAULT_TARGET_LOSS

    def __post_init__(self) -> None:
        check_field_types(self)
        if not math.isfinite(self.target_loss) or self.target_loss <= 0:
            raise ValueError(f"{self.target_loss}: a target mean training loss is a finite number > 0 (e.g. 1.0)")


RECORD_METRICS = ("best_val_acc", "best_val_acc_epoch", "epochs_to_target_loss", "seconds_to_target_loss",
                  "final_val_acc", "final_train_loss")
"""The :class:`TrainingRecords` fields that are run-level values of ``dynamics.csv`` (when known)."""


class TrainingRecordsAnalysis(Analysis):
    """The records of a run from its ``metrics.csv`` rows.

    Offline, at each checkpoint of epoch E it reads ``<run_dir>/metrics.csv`` and gives the records
    of the rows up to E: the run-level values :data:`RECORD_METRICS` that are known (no
    ``epochs_to_target_loss`` before the target is reached), and the artifacts ``records``
    (:class:`TrainingRecords`, None without rows), ``curves`` (those rows), ``metrics_csv`` (its
    path, None without the file), ``loss_floor`` (of the model's label smoothing, see
    :func:`loss_floor`; None when its number of classes is unknown) and ``missing`` (why there are no
    records, None when there are).
    """

    name = "training_records"
    runs_live = False  # it reads metrics.csv, which training writes
    reads_run_files = True
    settings_type = TrainingRecordsSettings
    families = (MetricFamily("records", "Training records: from the run's metrics.csv",
                             "|".join(RECORD_METRICS)),)

    def run(self, epoch: int, rows: Sequence[MetricsRow]) -> AnalysisResult:
        """The records of ``rows`` (at least one) as values and the artifact ``records``; ``epoch`` is
        the epoch they are labelled with."""
        records = training_records(rows, self.settings.target_loss)
        values = {("", name): float(getattr(records, name)) for name in RECORD_METRICS
                  if getattr(records, name) is not None}
        return AnalysisResult(epoch, values=values, artifacts={"records": records})

    def probe_checkpoint(self, checkpoint: CheckpointInputs) -> AnalysisResult:
        """The records of the run's ``metrics.csv`` up to the checkpoint's epoch (see the class).

        Raises:
            ProbeInputError: the run's ``metrics.csv`` is not one (the message names it, never its content).
        """
        path = checkpoint.run_dir / METRICS_FILE if checkpoint.run_dir is not None else None
        rows: list[dict[str, float]] = []
        if path is None or not path.is_file():
            missing = ("no metrics.csv: " + ("a checkpoint outside a run directory" if path is None
                                             else f"{path} does not exist"))
            path = None
        else:
            try:
                rows = [row for row in read_metrics(path) if row["epoch"] <= checkpoint.epoch]
            except ValueError as error:
                raise ProbeInputError(f"{error}; metrics.csv is written by train.py, restore it or move it "
                                      "away") from error
            missing = f"{path} has no rows up to epoch {checkpoint.epoch}" if not rows else None
        classes, smoothing = checkpoint.hparams.get("num_classes"), checkpoint.hparams.get("label_smoothing")
        facts = {"curves": rows, "metrics_csv": None if path is None else str(path), "missing": missing,
                 "loss_floor": None if classes is None else loss_floor(float(smoothing or 0.0), int(classes))}
        if not rows:
            return AnalysisResult(checkpoint.epoch, artifacts={"records": None, **facts})
        result = self.run(checkpoint.epoch, rows)
        result.artifacts.update(facts)
        return result
