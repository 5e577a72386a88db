"""Depth profiles: one line per probed epoch (mean over a group's seeds), the probe inputs as layer 0."""

import dataclasses
import statistics

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from attnconv_pl.reports.profiles import COLOURS, depth_profile_figure, depth_profiles, epoch_norm
from attnconv_pl.reports.records import INPUT_LAYER


def test_a_profile_is_the_mean_and_sd_over_seeds_with_the_inputs_first(make_run):
    runs = [dataclasses.replace(make_run("a/s0", "attention_net", scale=1.0), inputs={"variance": 0.25}),
            dataclasses.replace(make_run("a/s1", "attention_net", scale=3.0), inputs={"variance": 0.75}),
            make_run("c/s0", "conv_net", layers=("stem", "conv", "pool", "head"))]
    found = depth_profiles(runs, ["variance", "drift_prev_w2"])
    assert list(found) == ["attention_net", "conv_net"]
    variance, drift = found["attention_net"]
    assert variance.layers == [INPUT_LAYER, "stem", "mixer", "head"] and variance.epochs == [0, 1, 2]
    assert drift.layers == ["stem", "mixer", "head"] and drift.epochs == [1, 2]  # no drift at initialisation
    for row, epoch in enumerate(variance.epochs):
        assert variance.mean[row, 0] == 0.5 and variance.std[row, 0] == pytest.approx(statistics.stdev([0.25, 0.75]))
        for column, layer in enumerate(variance.layers[1:], start=1):
            seeds = [run.value(epoch, layer, "variance") for run in runs[:2]]
            assert variance.mean[row, column] == statistics.mean(seeds)
            assert variance.std[row, column] == pytest.approx(statistics.stdev(seeds))
    assert found["conv_net"][0].layers == ["stem", "conv", "pool", "head"]  # its inputs were not measured


def test_the_figure_draws_one_line_per_probed_epoch_coloured_from_initialisation_to_trained(make_run):
    run = dataclasses.replace(make_run("a/s0", "g", epochs=(0, 1, 3, 6)), inputs={"variance": 0.5})
    profiles = depth_profiles([run], ["variance", "id_twonn", "drift_prev_w2"])["g"]
    figure = depth_profile_figure(profiles, "g: compactness")
    panels = [axis for axis in figure.axes if axis.get_visible() and axis.get_title()]
    assert [axis.get_title() for axis in panels] == [
        "total variance\nvariance", "intrinsic dimension (twonn)\nid_twonn",
        "drift vs previous epoch, point cloud W2\ndrift_prev_w2"]
    variance, id_twonn, drift = panels
    assert [line.get_label() for line in variance.lines] == ["epoch 0", "epoch 1", "epoch 3", "epoch 6"]
    assert [line.get_label() for line in drift.lines] == ["epoch 1", "epoch 3", "epoch 6"]
    assert [tick.get_text() for tick in variance.get_xticklabels()] == [INPUT_LAYER, "stem", "mixer", "head"]
    for epoch, line in zip((0, 1, 3, 6), variance.lines):
        np.testing.assert_allclose(line.get_ydata(), [0.5, *(run.value(epoch, layer, "variance")
                                                            for layer in ("stem", "mixer", "head"))])
        assert line.get_color() == to_rgba(COLOURS(epoch_norm([0, 1, 3, 6])(epoch)))
    assert variance.get_ylabel() == "activation units²" and id_twonn.get_ylabel() == "dimensions"
    (colour_bar,) = [axis for axis in figure.axes if axis.get_ylabel().startswith("completed epochs")]
    assert list(colour_bar.get_yticks()) == [0, 1, 3, 6]


def drawn(figure):
    """The figure drawn by Agg (as when saved), and its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    return renderer


def overlap(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_long_titles_are_shown_whole_inside_the_figure_without_overlapping_anything(make_run):
    """Drift's long metric titles take more lines instead of being shortened, and every line fits:
    the renderer's extent of each title lies inside the figure, above its panel, and clear of the
    other panels (tick labels included), of the other titles and of the figure's title."""
    from attnconv_pl.reports.records import metric_title

    metrics = ["drift_prev_displacement", "drift_init_displacement", "drift_prev_h1_bottleneck", "drift_prev_w2",
               "drift_init_w2_sliced", "drift_prev_h0_w1"]
    layers = ("patch_embed", "blocks.0.attn", "blocks.1.mlp", "head")
    rows = [(epoch, layer, metric, 1.0 + epoch + i) for epoch in (1, 2) for i, layer in enumerate(layers)
            for metric in metrics]
    run = dataclasses.replace(make_run("a/s0", "vit_tiny_patch4_32_with_a_long_name", layers=layers), rows=rows)
    (profiles,) = depth_profiles([run], metrics).values()
    figure = depth_profile_figure(profiles, "vit_tiny_patch4_32_with_a_long_name: drift against depth, per probed "
                                            "epoch, mean over 3 seeds")
    renderer = drawn(figure)
    inside = figure.bbox
    panels = [axis for axis in figure.axes if axis.get_visible() and axis.get_title()]
    assert [" ".join(axis.get_title().split()) for axis in panels] == [
        f"{metric_title(metric)} {metric}" for metric in metrics]
    titles = [axis.title.get_window_extent(renderer) for axis in panels]
    boxes = [axis.get_tightbbox(renderer) for axis in panels]
    heading = figure._suptitle.get_window_extent(renderer)
    assert " ".join(figure._suptitle.get_text().split()).endswith("mean over 3 seeds")
    assert inside.x0 <= heading.x0 and heading.x1 <= inside.x1 and heading.y1 <= inside.y1
    for index, (axis, title) in enumerate(zip(panels, titles)):
        assert inside.x0 <= title.x0 and title.x1 <= inside.x1 and title.y1 <= inside.y1
        assert title.y0 >= axis.get_window_extent(renderer).y1 - 1 and not overlap(title, heading)
        for other, (other_title, box) in enumerate(zip(titles, boxes)):
            if other != index:
                assert not overlap(title, other_title) and not overlap(title, box), (index, other)
