"""What the study runner shows of a training run while it trains: its epoch and latest validation
accuracy, read from the run's ``metrics.csv`` (``callbacks.EpochMetrics``: one row per completed
epoch, written atomically), one line each time a new epoch appears."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from attnconv_pl.analyses.training_records import METRICS_FILE, MetricsRow, read_metrics
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.io.run_dir import read_run_config


def latest_value(rows: Sequence[MetricsRow], column: str) -> Optional[tuple[int, float]]:
    """``(epoch, value)`` of the last row with a finite ``column``; None when no row has one."""
    for row in reversed(rows):
        value = row.get(column, math.nan)
        if value is not None and math.isfinite(value):
            return int(row["epoch"]), float(value)
    return None


def progress_line(rows: Sequence[MetricsRow], max_epochs: Optional[int]) -> str:
    """``epoch 3/10, val_acc 0.8123, train_loss 0.5310`` for the rows of ``metrics.csv`` in epoch
    order (at least one); the validation accuracy (a fraction) of an earlier epoch is marked with
    it when the last epoch was not validated, and ``/max_epochs`` is left out when unknown."""
    epoch = int(rows[-1]["epoch"])
    parts = [f"epoch {epoch}" + (f"/{max_epochs}" if max_epochs else "")]
    for column in ("val_acc", "train_loss"):
        latest = latest_value(rows, column)
        if latest is not None:
            parts.append(f"{column} {latest[1]:.4f}" + (f" (epoch {latest[0]})" if latest[0] != epoch else ""))
    return ", ".join(parts)


class RunProgress:
    """Follows one run directory: :meth:`update` returns a progress line when ``metrics.csv``
    holds an epoch it has not shown yet (also after a resume went back to an earlier epoch)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.shown_epoch: Optional[int] = None
        self.seen_mtime: Optional[int] = None

    def max_epochs(self) -> Optional[int]:
        """``trainer.max_epochs`` of the run's ``config.yaml`` (None while it is not written)."""
        try:
            value = (read_run_config(self.run_dir).get("trainer") or {}).get("max_epochs")
        except ProbeInputError:
            return None
        return value if isinstance(value, int) else None

    def update(self) -> Optional[str]:
        """A line for a newly completed epoch, or None (no new epoch, no file yet, unreadable)."""
        path = self.run_dir / METRICS_FILE
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if mtime == self.seen_mtime:
            return None
        self.seen_mtime = mtime
        try:
            rows = read_metrics(path)
        except (OSError, ValueError):
            return None
        if not rows or rows[-1]["epoch"] == self.shown_epoch:
            return None
        self.shown_epoch = int(rows[-1]["epoch"])
        return progress_line(rows, self.max_epochs())
