"""The report as one document: sections of tables, paragraphs and figures, which
``reports/html.py`` and ``reports/markdown.py`` render alike.

A paragraph (and a sub-heading) is a tuple of inline runs: plain text (``str``), :class:`Code`
or :class:`Link`. Neither the model nor its renderers know about runs, metrics or analyses; the
section modules in ``reports/sections/`` turn those into blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from attnconv_pl.reports.figures import ReportFigure


@dataclass(frozen=True)
class Code:
    """Inline code: a metric's name, a module, a command."""

    text: str


@dataclass(frozen=True)
class Link:
    """An inline link, ``href`` relative to the report folder or absolute."""

    text: str
    href: str


Inline = Union[str, Code, Link]
"""A run of inline content: plain text, code or a link."""


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of inline runs."""

    runs: tuple[Inline, ...]


@dataclass(frozen=True)
class Table:
    """A table of text cells; the cells of ``numeric_columns`` (indices) hold numbers and are
    right-aligned where the format allows."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric_columns: tuple[int, ...] = ()

    @classmethod
    def of(cls, header: list[str], rows: list[list[str]], numeric_columns: range = range(0)) -> Table:
        """A table from the lists the table functions of ``reports/tables.py`` return."""
        return cls(tuple(header), tuple(map(tuple, rows)), tuple(numeric_columns))


@dataclass(frozen=True)
class Figures:
    """Figures shown side by side, in order (saved as ``figures/<file_name>``)."""

    figures: tuple[ReportFigure, ...]


@dataclass(frozen=True)
class Subsection:
    """A sub-heading and its blocks (e.g. one metric's figures); ``folded``: shown by its heading
    alone until opened, where the format allows (HTML)."""

    title: tuple[Inline, ...]
    blocks: tuple[Block, ...]
    folded: bool = False


Block = Union[Paragraph, Table, Figures, Subsection]


@dataclass(frozen=True)
class Section:
    """A top-level section: ``key`` is its anchor, the part of ``title`` before a colon its
    entry in the table of contents; ``folded``: shown by its heading alone until opened, where
    the format allows (HTML)."""

    key: str
    title: str
    blocks: tuple[Block, ...]
    folded: bool = False


@dataclass(frozen=True)
class Document:
    """The report.

    Attributes:
        title: the heading (``Probe report``).
        subject: what the report is about (the runs' labels), added to the page's title.
        created: when it was written.
        command: the command line that wrote it.
        sections: in order.
    """

    title: str
    subject: str
    created: str
    command: str
    sections: tuple[Section, ...]
