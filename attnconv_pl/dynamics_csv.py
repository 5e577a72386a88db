"""``dynamics.csv``: the long-format table of every probed number (one row per number).

Columns ``epoch,layer,metric,value`` (``probe.py`` adds a leading ``run`` column). Writing an
epoch replaces any rows of that epoch already in the file, so re-probing after a resume never
duplicates rows; the file is rewritten atomically.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable, Sequence

from attnconv_pl.atomic import atomic_write_text

COLUMNS = ("epoch", "layer", "metric", "value")


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


def write_epochs(path: Path, rows: Iterable[Sequence], columns: Sequence[str] = COLUMNS) -> None:
    """Merge ``rows`` (tuples in ``columns`` order) into ``path``, replacing earlier rows of the
    same epochs (and run, when there is a ``run`` column); atomic."""
    rows = [tuple(row) for row in rows]
    key_columns = [c for c in ("run", "epoch") if c in columns]
    replaced = {tuple(str(row[columns.index(c)]) for c in key_columns) for row in rows}
    header, existing = read_rows(path)
    if existing and header != list(columns):
        raise ValueError(f"{path} has columns {header}, expected {list(columns)}; write to another file")
    kept = [r for r in existing if tuple(r[c] for c in key_columns) not in replaced]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([r[c] for c in columns] for r in kept)
    writer.writerows([*row[:-1], format_value(row[-1])] for row in rows)
    atomic_write_text(path, buffer.getvalue())
