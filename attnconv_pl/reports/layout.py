"""Fixed figure margins: as readable as matplotlib's layout engines and several times faster
(a report draws dozens of figures; constrained layout took over half of their time)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from matplotlib.artist import Artist
from matplotlib.figure import Figure

CHARACTER_WIDTH = 0.6
"""Average width of a legend character, in ems (of the font size)."""


def set_margins(figure: Figure, left: float = 0.65, right: float = 0.15, bottom: float = 0.75, top: float = 0.55,
                wspace: float = 0.55, hspace: float = 0.75) -> None:
    """Place the subplots with margins and gaps given in inches (gaps between panels too).

    Args:
        figure: a figure whose axes came from ``figure.subplots``.
        left, right, bottom, top: space at the figure's edges for tick labels, titles, legends.
        wspace, hspace: space between neighbouring panels, horizontally and vertically.
    """
    width, height = figure.get_size_inches()
    gridspec = figure.axes[0].get_subplotspec().get_gridspec()
    rows, columns = gridspec.get_geometry()
    panel_width = (width - left - right - wspace * (columns - 1)) / columns
    panel_height = (height - bottom - top - hspace * (rows - 1)) / rows
    figure.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                           wspace=wspace / panel_width, hspace=hspace / panel_height)


def fitted(text: str, characters: int) -> str:
    """``text`` shortened to at most ``characters`` characters by an ellipsis in its middle
    (the start and end of a layer's or metric's name tell it apart best)."""
    if len(text) <= characters:
        return text
    head = (characters - 1) // 2
    return f"{text[:head]}…{text[len(text) - (characters - 1 - head):]}"


def wrapped(text: str, characters: int) -> str:
    """``text`` on as many lines of at most ``characters`` characters as it needs, broken at
    spaces where it has them (a longer word is split): a title is never cut."""
    return "\n".join(textwrap.wrap(text, characters, break_on_hyphens=False)) or text


def text_height(text: str, fontsize: float) -> float:
    """Height in inches of ``text``'s lines at ``fontsize`` points (matplotlib's line spacing 1.2)."""
    return (text.count("\n") + 1) * 1.2 * fontsize / 72


def legend_below(figure: Figure, handles: Sequence[Artist], labels: Sequence[str], fontsize: float = 8) -> float:
    """A legend along the figure's bottom edge, as many entries per row as fit the width;
    the figure grows by the legend's height, which is returned (inches) so the caller can
    add it to the bottom margin."""
    if not labels:
        return 0.0
    width, height = figure.get_size_inches()
    entry = max(len(label) for label in labels) * CHARACTER_WIDTH * fontsize / 72 + 0.55
    columns = max(1, min(len(labels), int(width // entry)))
    rows = -(-len(labels) // columns)
    legend_height = rows * 1.5 * fontsize / 72 + 0.1
    figure.set_size_inches(width, height + legend_height)
    figure.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=columns, fontsize=fontsize,
                  frameon=False, borderaxespad=0.2)
    return legend_height
