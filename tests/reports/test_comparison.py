"""The comparison figure: seeds of a group summarised by mean and sample standard deviation."""

import dataclasses
import math
import statistics

import numpy as np

from attnconv_pl.reports.comparison import comparison_figure, comparison_rows, seed_statistics


def test_seed_statistics_are_the_mean_and_sample_std_over_seeds(make_run):
    runs = [make_run("attn/s0", "attention_net", scale=1.0), make_run("attn/s1", "attention_net", scale=2.0),
            make_run("attn/s2", "attention_net", scale=4.0), make_run("conv/s0", "conv_net", scale=3.0)]
    attention, conv = seed_statistics(runs, "variance")
    assert (attention.group, attention.runs, conv.group, conv.runs) == ("attention_net", 3, "conv_net", 1)
    for i, layer in enumerate(attention.layers):
        seeds = [run.value(2, layer, "variance") for run in runs[:3]]
        assert attention.mean[i] == statistics.mean(seeds)
        assert math.isclose(attention.std[i], statistics.stdev(seeds))
    np.testing.assert_array_equal(conv.std, 0.0)


def test_seed_statistics_ignore_missing_values(make_run):
    full, partial = make_run("a", "g", scale=1.0), make_run("b", "g", scale=3.0)
    partial = dataclasses.replace(partial, rows=[row for row in partial.rows if row[1:3] != ("head", "variance")])
    (stats,) = seed_statistics([full, partial], "variance")
    assert stats.mean[2] == full.value(2, "head", "variance") and stats.std[2] == 0.0
    assert math.isclose(stats.std[0], statistics.stdev([full.value(2, "stem", "variance"),
                                                        partial.value(2, "stem", "variance")]))


def test_comparison_rows_put_compactness_first_then_stability_per_dimension(make_run):
    assert comparison_rows([make_run("a", "g")]) == [
        ["variance", "id_twonn"], ["stability_h0_w1", "stability_h0_w2", "stability_h0_bottleneck"]]


def test_comparison_figure_plots_each_groups_mean_with_error_bars_for_seeds(make_run):
    runs = [make_run("a0", "attention_net", scale=1.0), make_run("a1", "attention_net", scale=2.0),
            make_run("c0", "conv_net", scale=5.0)]
    figure = comparison_figure(runs)
    visible = [axis for axis in figure.axes if axis.get_visible()]
    assert [axis.get_title() for axis in visible] == [
        "total variance", "intrinsic dimension (twonn)", "input → output, H0 W1", "input → output, H0 W2",
        "input → output, H0 W∞ (bottleneck)"]
    assert [axis.get_ylabel() for axis in visible] == ["activation units²", "dimensions",
                                                       *["distance (activation units)"] * 3]
    variance = visible[0]
    attention, conv = seed_statistics(runs, "variance")
    np.testing.assert_allclose(variance.containers[0].lines[0].get_ydata(), attention.mean)
    np.testing.assert_allclose(variance.containers[1].lines[0].get_ydata(), conv.mean)
    assert variance.containers[0].has_yerr and not variance.containers[1].has_yerr
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["attention_net (2 seeds)", "conv_net (1 seed)"]
