"""Tables keyed by epoch, merged epoch by epoch: ``dynamics.csv`` and ``metrics.csv``.

``dynamics.csv`` is the long-format table of every probed number (one row per number), columns
``epoch,layer,metric,value`` (``probe.py`` adds a leading ``run`` column); ``metrics.csv``
(``callbacks.EpochMetrics``) has one row per epoch. Writing an epoch replaces the rows of that
epoch already in the file (only the writer's own metrics, when several analyses share the
file), so re-writing after a resume never duplicates rows; the file is rewritten atomically,
one writer at a time within a process (analyses write from their worker threads).
"""

from __future__ import annotations

import csv
import io
import math
import numbers
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Optional

from attnconv_pl.io.atomic import atomic_write_text

DYNAMICS_FILE = "dynamics.csv"
"""File name of a run's table of probed numbers, in its run directory (and in a report folder)."""
COLUMNS = ("epoch", "layer", "metric", "value")
_WRITING = threading.Lock()
"""Held while a table is read and rewritten, so two writers never lose each other's rows."""


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a dynamics CSV (empty when the file does not exist)."""
    if not path.is_file():
        return [], []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def format_value(value: float) -> str:
    """A number as written to the CSV: full float precision, ``nan`` for NaN."""
    return "nan" if math.isnan(value) else repr(float(value))


def format_cell(cell: object) -> object:
    """A cell as written to the CSV: non-integer numbers through :func:`format_value`, the rest
    (epochs, names) as they are."""
    if isinstance(cell, numbers.Real) and not isinstance(cell, numbers.Integral):
        return format_value(cell)
    return cell


def _write(path: Path, columns: Sequence[str], kept: list[dict[str, str]], rows: list[tuple]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([r[c] for c in columns] for r in kept)
    writer.writerows([format_cell(cell) for cell in row] for row in rows)
    atomic_write_text(path, buffer.getvalue())


def _existing(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """The rows of ``path`` in ``columns``: a table written before columns were appended (a run
    made by an earlier version, resumed now) gains them, empty in its earlier rows."""
    header, existing = read_rows(path)
    if existing and header != list(columns):
        if header != list(columns[:len(header)]):
            raise ValueError(f"{path} has columns {header}, expected {list(columns)}; write to another file")
        existing = [{column: row.get(column, "") for column in columns} for row in existing]
    return existing


def write_epochs(path: Path, rows: Iterable[Sequence], columns: Sequence[str] = COLUMNS,
                 owns: Optional[Callable[[str], bool]] = None) -> None:
    """Merge ``rows`` (tuples in ``columns`` order) into ``path``, replacing earlier rows of the
    same epochs (and run, when there is a ``run`` column) whose metric the writer ``owns``
    (default: every metric); atomic."""
    rows = [tuple(row) for row in rows]
    key_columns = [c for c in ("run", "epoch") if c in columns]
    replaced = {tuple(str(row[columns.index(c)]) for c in key_columns) for row in rows}
    with _WRITING:
        kept = [r for r in _existing(path, columns) if tuple(r[c] for c in key_columns) not in replaced
                or (owns is not None and not owns(r["metric"]))]
        _write(path, columns, kept, rows)


def drop_epochs_after(path: Path, epoch: int, columns: Sequence[str] = COLUMNS,
                      owns: Optional[Callable[[str], bool]] = None) -> None:
    """Remove the rows of epochs later than ``epoch`` whose metric the caller ``owns`` (default:
    every row) from ``path`` (atomic; nothing to do when there are none). A run resumed from an
    earlier checkpoint drops what the abandoned continuation wrote."""
    with _WRITING:
        existing = _existing(path, columns)
        kept = [r for r in existing if int(r["epoch"]) <= epoch or (owns is not None and not owns(r["metric"]))]
        if len(kept) < len(existing):
            _write(path, columns, kept, [])
