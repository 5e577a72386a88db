"""Per-epoch panels and training curves: a mean line and a ± sd band per group of seeds, on the
completed-epoch axis with ticks on the probed epochs."""

import re
import statistics

import numpy as np
import pytest
from test_records_report import with_curves

from attnconv_pl.reports.bands import EPOCH_LABEL, group_bands
from attnconv_pl.reports.figures import epoch_figure
from attnconv_pl.reports.report import write_report
from attnconv_pl.reports.training_curves import training_curves_figure


def band_edges(axis, index=0):
    """(x, lower, upper) of the ``index``-th band drawn by ``fill_between`` on ``axis``."""
    vertices = axis.collections[index].get_paths()[0].vertices  # the polygon around the band
    x = np.unique(vertices[:, 0])
    return (x, np.array([vertices[vertices[:, 0] == at, 1].min() for at in x]),
            np.array([vertices[vertices[:, 0] == at, 1].max() for at in x]))


def metrics_rows(train_loss, val_acc):
    """metrics.csv rows of epochs 1, 2, ... (accuracy columns derived from the losses)."""
    return [{"epoch": epoch, "train_loss": loss, "val_loss": loss + 0.1, "train_acc": 1 - loss / 3, "val_acc": acc}
            for epoch, (loss, acc) in enumerate(zip(train_loss, val_acc), start=1)]


def test_bands_are_the_mean_and_sample_sd_over_each_groups_seeds(make_run):
    runs = [make_run("a/s0", "attention_net", scale=1.0), make_run("a/s1", "attention_net", scale=2.0),
            make_run("a/s2", "attention_net", scale=4.0), make_run("c/s0", "conv_net", scale=3.0)]
    attention, conv = group_bands(runs, lambda run: run.series("mixer", "variance"))
    assert (attention.group, attention.runs, conv.group, conv.runs) == ("attention_net", 3, "conv_net", 1)
    assert list(attention.epochs) == [0, 1, 2] and attention.label == "attention_net (3 seeds)"
    for index, epoch in enumerate(attention.epochs):
        seeds = [run.value(epoch, "mixer", "variance") for run in runs[:3]]
        assert attention.mean[index] == pytest.approx(statistics.mean(seeds))
        assert attention.std[index] == pytest.approx(statistics.stdev(seeds))
    np.testing.assert_array_equal(conv.std, 0.0)


def test_the_epoch_figure_draws_each_groups_mean_and_its_band_with_ticks_on_the_probed_epochs(make_run):
    runs = [make_run("a/s0", "attention_net", epochs=(0, 2, 5), scale=1.0),
            make_run("a/s1", "attention_net", epochs=(0, 2, 5), scale=3.0),
            make_run("c/s0", "conv_net", layers=("stem", "conv", "head"), epochs=(0, 2, 5), scale=2.0)]
    figure = epoch_figure(runs, "variance")
    panels = {axis.get_title(): axis for axis in figure.axes if axis.get_visible()}
    assert list(panels) == ["stem", "mixer", "head", "conv"]
    stem = panels["stem"]
    attention, conv = stem.lines
    seeds = np.array([[run.value(epoch, "stem", "variance") for epoch in (0, 2, 5)] for run in runs[:2]])
    np.testing.assert_allclose(attention.get_ydata(), seeds.mean(axis=0))
    np.testing.assert_allclose(conv.get_ydata(), [runs[2].value(epoch, "stem", "variance") for epoch in (0, 2, 5)])
    assert len(stem.collections) == 1, "a band only for the group with several seeds"
    x, lower, upper = band_edges(stem)
    np.testing.assert_allclose(x, [0, 2, 5])
    np.testing.assert_allclose(lower, seeds.mean(axis=0) - seeds.std(axis=0, ddof=1))
    np.testing.assert_allclose(upper, seeds.mean(axis=0) + seeds.std(axis=0, ddof=1))
    assert list(stem.get_xticks()) == [0, 2, 5] and stem.get_ylabel() == "activation units²"
    assert panels["conv"].get_xlabel() == EPOCH_LABEL  # the lowest panel of its column
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["attention_net (2 seeds)", "conv_net (1 seed)"]


def test_training_curves_are_the_seed_mean_of_metrics_csv_on_the_probed_epoch_axis(make_run):
    runs = [with_curves(make_run("a/s0", "attention_net", epochs=(0, 2, 4)),
                        metrics_rows([2.0, 1.5, 1.0, 0.8], [0.3, 0.5, 0.6, 0.7])),
            with_curves(make_run("a/s1", "attention_net", epochs=(0, 2, 4)),
                        metrics_rows([2.2, 1.3, 1.2, 0.6], [0.2, 0.5, 0.7, float("nan")]))]
    loss, accuracy = training_curves_figure(runs).axes
    train_loss, val_loss = loss.lines
    np.testing.assert_allclose(train_loss.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(train_loss.get_ydata(), [2.1, 1.4, 1.1, 0.7])
    x, lower, upper = band_edges(loss)
    np.testing.assert_allclose(upper - lower, 2 * np.std([[2.0, 1.5, 1.0, 0.8], [2.2, 1.3, 1.2, 0.6]], axis=0,
                                                         ddof=1))
    assert val_loss.get_linestyle() == "--"
    val_acc = accuracy.lines[1]
    np.testing.assert_allclose(val_acc.get_ydata(), [0.25, 0.5, 0.65, 0.7])  # a missing value never counts
    assert list(loss.get_xticks()) == [0, 2, 4] and loss.get_xlim()[0] < 0 < 4 < loss.get_xlim()[1]
    assert loss.get_ylabel() == "cross-entropy (nats)" and accuracy.get_ylabel() == "top-1 accuracy (fraction)"


def test_the_report_shows_the_training_curves_before_the_dynamics(tmp_path, make_run):
    runs = [with_curves(make_run("a/s0", "attention_net"), metrics_rows([2.0, 1.5], [0.3, 0.5])),
            make_run("b/s0", "conv_net")]
    figures = write_report(tmp_path, runs, {})
    assert figures[0].file_name == "training_curves.png" and (tmp_path / "figures" / "training_curves.png").is_file()
    page = (tmp_path / "report.html").read_text()
    assert page.index('id="probed"') < page.index('id="training"') < page.index('id="fig-training_curves"') \
        < page.index('id="comparison"')
    assert re.search(r'<li><a href="#training">Training curves</a></li>', page)
    assert "figures/training_curves.png" in (tmp_path / "report.md").read_text()
    write_report(tmp_path, [make_run("b/s0", "conv_net")], {})
    assert not (tmp_path / "figures" / "training_curves.png").exists()
    assert 'id="training"' not in (tmp_path / "report.html").read_text()
