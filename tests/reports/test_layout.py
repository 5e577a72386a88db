"""Fixed figure margins are placed where asked, in inches."""

import pytest
from matplotlib.figure import Figure

from attnconv_pl.reports.layout import set_margins


def test_margins_and_gaps_are_in_inches():
    figure = Figure(figsize=(8.0, 5.0))
    axes = figure.subplots(2, 3)
    set_margins(figure, left=0.5, right=0.25, bottom=0.75, top=0.5, wspace=0.4, hspace=0.6)
    boxes = [[axis.get_position() for axis in row] for row in axes]
    assert boxes[0][0].x0 * 8 == pytest.approx(0.5) and (1 - boxes[0][2].x1) * 8 == pytest.approx(0.25)
    assert boxes[1][0].y0 * 5 == pytest.approx(0.75) and (1 - boxes[0][0].y1) * 5 == pytest.approx(0.5)
    assert (boxes[0][1].x0 - boxes[0][0].x1) * 8 == pytest.approx(0.4)
    assert (boxes[0][0].y0 - boxes[1][0].y1) * 5 == pytest.approx(0.6)
