"""ProbedRun lookups, metric sections and titles, depth positions."""

import math

import numpy as np
import pytest

from attnconv_pl.reports.records import (
    layer_positions,
    metric_section,
    metric_title,
    metric_unit,
    report_metrics,
    shared_layers,
)


def test_values_series_and_last_epoch(make_run):
    run = make_run("a", "g", epochs=(0, 2, 5))
    assert run.epochs == [0, 2, 5] and run.last_epoch == 5
    assert run.value(2, "mixer", "variance") == (1 + 1 + 20) * 1
    assert math.isnan(run.value(0, "mixer", "drift_prev_w2"))
    epochs, values = run.series("head", "drift_prev_w2")
    assert epochs == [2, 5] and values == [(1 + 2 + 10 * e) * 6 for e in (2, 5)]
    assert run.final_accuracy() == 0.5
    assert "overhead_seconds" not in run.layer_metrics()


@pytest.mark.parametrize("metric, section", [
    ("variance", "compactness"), ("participation_ratio", "compactness"), ("id_lPCA", "compactness"),
    ("stability_h1_bottleneck", "stability"), ("stability_w2", "stability"), ("lipschitz_p90", "stability"),
    ("next_h0_w1", "next"), ("drift_init_displacement", "drift"), ("drift_prev_h1_w2", "drift"),
    ("h1_total_persistence", "topology"), ("something_new", "other"),
])
def test_every_design_metric_has_its_section(metric, section):
    assert metric_section(metric) == section


def test_report_metrics_are_ordered_by_section(make_run):
    metrics = report_metrics([make_run("a", "g")])
    sections = [metric_section(m) for m in metrics]
    assert sections == sorted(sections, key=["compactness", "stability", "next", "drift", "topology"].index)
    assert set(metrics) == {"variance", "id_twonn", "stability_h0_w1", "stability_h0_w2", "stability_h0_bottleneck",
                            "drift_prev_w2", "h0_bars"}


@pytest.mark.parametrize("metric, title", [
    ("stability_h1_w1", "input → output, H1 W1"),
    ("stability_w2", "input → output, point cloud W2"),
    ("next_h0_bottleneck", "to next layer, H0 W∞ (bottleneck)"),
    ("drift_init_displacement", "drift vs initialisation, mean displacement"),
    ("id_twonn", "intrinsic dimension (twonn)"),
    ("h0_total_persistence", "H0 total persistence"),
    ("cka_prev", "CKA with the previous probed epoch"),
    ("cka_last", "CKA with the last probed epoch"),
    ("cka_with:blocks.1_w1", "CKA with layer blocks.1_w1"),
])
def test_metric_titles(metric, title):
    assert metric_title(metric) == title


def test_cka_is_a_similarity_whatever_its_layer_is_called():
    assert metric_unit("cka_first") == metric_unit("cka_with:blocks.1_w1") == "CKA (0-1, similarity)"
    assert metric_unit("next_w1") == "distance (activation units)"


def test_layer_positions_line_up_models_of_different_depth(make_run):
    short, deep = make_run("a", "g", layers=("a", "b", "c")), make_run("b", "h", layers=tuple("abcde"))
    assert shared_layers([short, deep]) is None
    assert shared_layers([short, make_run("c", "g", layers=("a", "b", "c"))]) == ["a", "b", "c"]
    np.testing.assert_allclose(layer_positions(deep.layers, shared=False), [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(layer_positions(short.layers, shared=True), [0, 1, 2])
