"""The convex-heads figures draw exactly the numbers they are given."""

import numpy as np
import pytest

from attnconv_pl.heads.figures import accuracy_figure, certificate_figure, rank_figure, token_figure


def test_accuracy_bars_are_the_means_with_sd_error_bars():
    figure = accuracy_figure({"linear": {"top-1": [0.4, 0.5, 0.6], "top-5": [0.8, 0.9, 1.0]},
                              "mlp": {"top-1": [0.7, 0.7, 0.7], "top-5": [0.9, 0.95, 1.0]}})
    axes = figure.axes[0]
    heights = sorted(round(bar.get_height(), 6) for bar in axes.patches)
    assert heights == sorted([0.5, 0.9, 0.7, 0.95])
    assert [t.get_text() for t in axes.get_xticklabels()] == ["linear", "mlp"]


def test_certificate_draws_the_relative_gap_on_a_log_axis():
    history = {"step": [20, 40], "objective": [2.0, 1.0], "duality_gap": [0.5, 1e-4]}
    objective_axes, gap_axes = certificate_figure({"seed 0": history}, step_label="iterations").axes
    assert objective_axes.lines[0].get_ydata().tolist() == [2.0, 1.0]
    assert gap_axes.lines[0].get_ydata().tolist() == pytest.approx([0.25, 1e-4])
    assert gap_axes.get_yscale() == "log" and gap_axes.get_xlabel() == "iterations"


def test_rank_line_is_the_mean_over_seeds():
    axes = rank_figure({0.1: [1, 1, 1], 0.001: [4, 5, 6]}).axes[0]
    line = axes.lines[0]
    assert line.get_xdata().tolist() == [0.001, 0.1] and line.get_ydata().tolist() == [5.0, 1.0]


def test_token_figure_shows_each_input_and_its_matrix():
    rng = np.random.default_rng(0)
    matrices = rng.normal(size=(2, 4, 4))
    figure = token_figure(rng.random((2, 4, 3)), matrices, np.array([[0, 0, 1, 1], [0, 1, 0, 1]]),
                          titles=["a", "b"])
    shown = [axes.images[0].get_array() for axes in figure.axes if axes.images]
    assert len(shown) == 4 and np.array_equal(shown[2], matrices[0]) and np.array_equal(shown[3], matrices[1])
    assert len(figure.axes[0].patches) == 4  # one band per token
