"""The training-records section: per run, its training records (from its ``metrics.csv``) and
its accuracy under input noise at the last probed epoch."""

from __future__ import annotations

from attnconv_pl.reports.document import Paragraph, Section, Table
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.tables import RECORDS_NOTE, has_records, records_table


def sections(runs: list[ProbedRun], figures: list[ReportFigure]) -> list[Section]:
    """The records table and what its columns mean, when any run has records or robustness numbers."""
    if not has_records(runs):
        return []
    header, rows = records_table(runs)
    return [Section("records", "Training records and robustness",
                    (Table.of(header, rows, range(2, len(header))), Paragraph((RECORDS_NOTE,))))]
