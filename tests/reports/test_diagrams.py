"""Persistence diagrams in the report: which probed epochs are drawn, one row per epoch, one scale
per layer, every label inside the figure and clear of the others."""

import dataclasses

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

import probe
from attnconv_pl.offline import options
from attnconv_pl.reports.diagrams import MAX_DIAGRAM_EPOCHS, diagram_epochs, persistence_epochs_figure


def test_grid_has_a_row_per_epoch_and_shares_each_layers_scale():
    small = [np.array([[0.0, 1.0]]), np.array([[0.2, 0.5]])]
    large = [np.array([[0.0, 4.0], [0.0, 3.0]]), np.empty((0, 2))]
    figure = persistence_epochs_figure({0: {"a": small, "b": small}, 5: {"a": large}}, ["a", "b"], "run")
    axes = np.array(figure.axes).reshape(2, 2)
    assert [axis.get_title() for axis in axes[0]] == ["a", "b"] and axes[1, 0].get_title() == ""
    assert [axis.get_ylabel() for axis in axes[:, 0]] == ["epoch 0\ndeath", "epoch 5\ndeath"]
    diagonal_ends = [axis.get_lines()[0].get_xdata()[1] for axis in axes[:, 0]]
    assert diagonal_ends == [4.0, 4.0]
    assert not axes[1, 1].get_visible()
    assert [len(c.get_offsets()) for c in axes[1, 0].collections] == [2]


def test_every_label_of_a_large_grid_is_inside_the_figure_and_clear_of_the_others():
    rng = np.random.default_rng(0)
    layers = ["patch_embed", "blocks.0", "blocks.1", "blocks.2.mlp.fc2", "head"]
    births = rng.uniform(0, 5, 30)
    diagram = [np.column_stack([np.zeros(30), rng.uniform(0, 9, 30)]), np.column_stack([births, births + 1])]
    figure = persistence_epochs_figure({epoch: dict.fromkeys(layers, diagram) for epoch in range(0, 60, 10)},
                                       layers, "vit/s0: output persistence diagrams")
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    texts = [figure._suptitle, *(text for axis in figure.axes
                                 for text in (axis.title, axis.xaxis.label, axis.yaxis.label) if text.get_text())]
    boxes = [text.get_window_extent(renderer) for text in texts]
    assert len(texts) == 1 + len(layers) + len(layers) + 6  # the title, a title per column, births, epochs
    for index, box in enumerate(boxes):
        assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1
        assert figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1
        for other in boxes[index + 1:]:
            assert not (box.x0 < other.x1 and other.x0 < box.x1 and box.y0 < other.y1 and other.y0 < box.y1)


@pytest.mark.parametrize("available, chosen, drawn", [
    ([0, 10, 20, 30], None, [0, 10, 20, 30]),  # a few: every one
    (list(range(11)), None, [0, 2, 4, 6, 8, 10]),  # many: spread evenly, first and last included
    (list(range(11)), ["all"], list(range(11))),
    ([0, 10, 20, 30], [30, 10, 7], [10, 30]),  # in epoch order, those it has
])
def test_the_epochs_drawn_are_every_probed_one_a_spread_or_the_chosen_ones(available, chosen, drawn):
    assert diagram_epochs(available, chosen) == drawn
    assert len(diagram_epochs(range(100), None)) == MAX_DIAGRAM_EPOCHS


def test_diagram_epochs_on_the_command_line_keep_those_epochs_and_name_the_absent_ones(make_run):
    run = make_run("a/s0", "g", epochs=(0, 1, 2))
    run = dataclasses.replace(run, diagrams={epoch: run.diagrams[0] for epoch in (0, 1, 2)})
    args = options.parse_args(["RUN", "--out", "R", "--diagram_epochs", "2", "5", "0"])
    kept, warning = probe.drawn_diagrams(run, args.diagram_epochs)
    assert sorted(kept.diagrams) == [0, 2]
    assert warning == "--diagram_epochs: run a/s0 has no persistence diagrams at epoch(s) 5 (it has them at 0, 1, 2)"
    assert probe.drawn_diagrams(run, None) == (run, None)
    assert sorted(probe.drawn_diagrams(run, ["all"])[0].diagrams) == [0, 1, 2]
