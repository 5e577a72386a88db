"""Persistence diagrams of the first and last epoch: one row per epoch, one scale per layer."""

import numpy as np

from attnconv_pl.reports.diagrams import persistence_epochs_figure


def test_grid_has_a_row_per_epoch_and_shares_each_layers_scale():
    small = [np.array([[0.0, 1.0]]), np.array([[0.2, 0.5]])]
    large = [np.array([[0.0, 4.0], [0.0, 3.0]]), np.empty((0, 2))]
    figure = persistence_epochs_figure({0: {"a": small, "b": small}, 5: {"a": large}}, ["a", "b"], "run")
    axes = np.array(figure.axes).reshape(2, 2)
    assert [axis.get_title() for axis in axes[:, 0]] == ["a, epoch 0", "a, epoch 5"]
    diagonal_ends = [axis.get_lines()[0].get_xdata()[1] for axis in axes[:, 0]]
    assert diagonal_ends == [4.0, 4.0]
    assert not axes[1, 1].get_visible()
    assert [len(c.get_offsets()) for c in axes[1, 0].collections] == [2]
