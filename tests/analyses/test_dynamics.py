"""The dynamics runner on hand-made snapshots: closed-form drift, the probes' own values, state."""

import math

import numpy as np
import pytest
import torch

from attnconv_pl import probes
from attnconv_pl.analyses.dynamics import Dynamics, DynamicsSettings
from attnconv_pl.analyses.dynamics.runner import run_probes
from attnconv_pl.analyses.probe_pool import ProbePool
from attnconv_pl.probes import DegenerateInputWarning
from attnconv_pl.reports.records import metric_title

SETTINGS = DynamicsSettings(id_methods=("twonn",), topology=False, lipschitz_pairs=200)


def snapshot(points: torch.Tensor, with_input: bool = False) -> dict:
    sides = {"output": points}
    if with_input:
        sides["input"] = points * 2
    return {"layer": sides}


@pytest.fixture
def cloud():
    return torch.randn(120, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_drift_of_a_translated_cloud_is_the_translation(cloud):
    """Epoch 1 = epoch 0 moved by v, epoch 2 = epoch 1 moved by v again: displacement and W2
    against the previous epoch are ||v||, against initialisation ||2v|| at epoch 2."""
    v = torch.tensor([0.3, -0.4, 0.0, 1.2, 0.0, 0.0], dtype=torch.float64)
    dynamics = Dynamics(SETTINGS, ["layer"])
    first = dynamics.run(0, snapshot(cloud)).values
    assert ("layer", "drift_prev_displacement") not in first and ("layer", "drift_init_w2") not in first
    dynamics.run(1, snapshot(cloud + v))
    values = dynamics.run(2, snapshot(cloud + 2 * v)).values
    assert values[("layer", "drift_prev_displacement")] == pytest.approx(float(v.norm()), rel=1e-12)
    assert values[("layer", "drift_prev_w2")] == pytest.approx(float(v.norm()), rel=1e-9)
    assert values[("layer", "drift_init_displacement")] == pytest.approx(float(2 * v.norm()), rel=1e-12)


def test_drift_against_an_initialisation_equal_to_the_previous_epoch_is_computed_once(cloud, monkeypatch):
    """At the first probed epoch the previous snapshot is the initial one (here a resumed, equal
    copy): drift_init_* are drift_prev_*'s numbers, from one W2 instead of two."""
    from attnconv_pl.analyses.dynamics import metrics as dynamics_metrics
    w2_calls = []
    w2 = dynamics_metrics.point_cloud_w2
    monkeypatch.setattr(dynamics_metrics, "point_cloud_w2", lambda *args: w2_calls.append(args) or w2(*args))
    v = torch.tensor([0.3, -0.4, 0.0, 1.2, 0.0, 0.0], dtype=torch.float64)
    dynamics = Dynamics(SETTINGS, ["layer"], pool=ProbePool(workers=1))  # in this process, where the count is
    dynamics.restore(snapshot(cloud.clone()), snapshot(cloud.clone()))
    values = dynamics.run(1, snapshot(cloud + v)).values
    assert len(w2_calls) == 1
    assert [metric for _, metric in values if metric.startswith("drift_")] == [
        "drift_prev_displacement", "drift_prev_w2", "drift_prev_w2_converged",
        "drift_init_displacement", "drift_init_w2", "drift_init_w2_converged"]
    for kind in ("displacement", "w2", "w2_converged"):
        assert values[("layer", f"drift_init_{kind}")] == values[("layer", f"drift_prev_{kind}")]
    for kind in ("displacement", "w2"):
        assert values[("layer", f"drift_init_{kind}")] == pytest.approx(float(v.norm()), rel=1e-9)
    dynamics.restore(snapshot(cloud), snapshot(cloud - v))
    values = dynamics.run(2, snapshot(cloud + v)).values
    assert len(w2_calls) == 3
    assert values[("layer", "drift_init_w2")] == pytest.approx(float(2 * v.norm()), rel=1e-9)


def test_compactness_and_stability_are_the_probes_values(cloud):
    values = Dynamics(SETTINGS, ["layer"]).run(0, snapshot(cloud, with_input=True)).values
    assert values[("layer", "variance")] == pytest.approx(probes.total_variance(cloud))
    assert values[("layer", "id_twonn")] == pytest.approx(probes.intrinsic_dimension(cloud, "twonn"))
    assert values[("layer", "lipschitz_max")] == pytest.approx(0.5)  # output = input / 2 exactly
    assert values[("layer", "stability_w2")] == pytest.approx(probes.wasserstein(cloud * 2, cloud))


def test_restore_points_drift_at_the_given_snapshots(cloud):
    """After a resume the runner measures drift against what it was given, not what it saw."""
    dynamics = Dynamics(SETTINGS, ["layer"])
    dynamics.run(0, snapshot(cloud))
    dynamics.restore(snapshot(cloud + 1.0), snapshot(cloud - 1.0))
    values = dynamics.run(3, snapshot(cloud)).values
    assert values[("layer", "drift_prev_displacement")] == pytest.approx(math.sqrt(6))
    assert values[("layer", "drift_init_displacement")] == pytest.approx(math.sqrt(6))


def test_topology_gives_diagrams_as_an_artifact_and_the_next_layer_distances(cloud):
    settings = DynamicsSettings(id_methods=("twonn",), max_points=60)
    two_layers = {"a": {"output": cloud}, "b": {"output": cloud * 3}}
    result = Dynamics(settings, ["a", "b"]).run(0, two_layers)
    assert sorted(result.artifacts["diagrams"]) == ["a", "b"]
    h0_a, h0_b = result.artifacts["diagrams"]["a"][0], result.artifacts["diagrams"]["b"][0]
    assert result.values[("a", "next_h0_w1")] == pytest.approx(probes.diagram_distance(h0_a, h0_b, 1))
    assert ("b", "next_h0_w1") not in result.values


def test_a_layer_input_equal_to_the_previous_output_reuses_its_diagrams_and_distances(cloud, monkeypatch):
    """b's input is a's output (a copy): its diagrams are computed once, and a's next_* are b's
    stability_* from one computation, both equal to the distances of the diagrams themselves."""
    from attnconv_pl.analyses.dynamics import runner as dynamics_runner
    computed = {"diagrams": 0, "distances": 0}
    diagrams_of, distances = dynamics_runner.diagrams_of, dynamics_runner.diagram_distance_metrics
    monkeypatch.setattr(dynamics_runner, "diagrams_of",
                        lambda *args: computed.__setitem__("diagrams", computed["diagrams"] + 1) or diagrams_of(*args))
    monkeypatch.setattr(dynamics_runner, "diagram_distance_metrics",
                        lambda *args: computed.__setitem__("distances", computed["distances"] + 1) or distances(*args))
    settings = DynamicsSettings(id_methods=("twonn",), max_points=60)
    hidden = torch.tanh(cloud)
    two_layers = {"a": {"input": cloud, "output": hidden}, "b": {"input": hidden.clone(), "output": hidden * 3}}
    values = run_probes(0, two_layers, settings, pool=ProbePool(workers=1)).values
    assert computed == {"diagrams": 3, "distances": 2}
    h1_hidden = probes.persistence_diagrams(hidden, max_points=60)[1]
    h1_b = probes.persistence_diagrams(hidden * 3, max_points=60)[1]
    for suffix, order in (("w1", 1), ("w2", 2), ("bottleneck", math.inf)):
        assert values[("a", f"next_h1_{suffix}")] == values[("b", f"stability_h1_{suffix}")]
        assert values[("b", f"stability_h1_{suffix}")] == probes.diagram_distance(h1_hidden, h1_b, order)
    assert list(values)[-6:] == [("a", f"next_h{dim}_{suffix}")
                                 for dim in (0, 1) for suffix in ("w1", "w2", "bottleneck")]


def three_epochs(settings: DynamicsSettings, workers: int) -> list:
    """Epochs 0-2 of three layers (one of them dead: all zeros) through a pool of ``workers``."""
    generator = torch.Generator().manual_seed(1)
    layers = ["a", "b", "dead"]
    dynamics = Dynamics(settings, layers, pool=ProbePool(workers))
    results = []
    for epoch in range(3):
        images = torch.randn(150, 12, generator=generator)
        hidden = torch.tanh(images @ torch.randn(12, 12, generator=generator))
        snapshot = {"a": {"input": images, "output": hidden},
                    "b": {"input": hidden, "output": hidden @ torch.randn(12, 5, generator=generator)},
                    "dead": {"output": torch.zeros(150, 5)}}
        results.append(dynamics.run(epoch, snapshot))
    dynamics.close()
    return results


def test_a_pool_of_processes_gives_the_serial_numbers_in_the_serial_order():
    settings = DynamicsSettings(max_points=80, lipschitz_pairs=300)
    with pytest.warns(DegenerateInputWarning):  # the dead layer's, raised again in this process
        pooled = three_epochs(settings, workers=2)
    serial = three_epochs(settings, workers=1)
    for pooled_epoch, serial_epoch in zip(pooled, serial):
        assert list(pooled_epoch.values) == list(serial_epoch.values)  # same metrics, same order
        assert [v for v in pooled_epoch.values.values() if not math.isnan(v)] == \
               [v for v in serial_epoch.values.values() if not math.isnan(v)]  # exactly equal
        for layer, diagrams in serial_epoch.artifacts["diagrams"].items():
            for ours, theirs in zip(pooled_epoch.artifacts["diagrams"][layer], diagrams):
                np.testing.assert_array_equal(ours, theirs)
    assert ("a", "drift_init_w2") in serial[2].values and ("a", "next_h1_w2") in serial[2].values


@pytest.mark.parametrize("method, n_points, expected", [
    ("auto", 120, "drift_prev_w2"), ("auto", 121, "drift_prev_w2_sliced"),
    ("exact", 121, "drift_prev_w2"), ("sliced", 120, "drift_prev_w2_sliced"),
    ("paired", 121, "drift_prev_w2_paired")])
def test_each_w2_is_named_by_its_method(cloud, method, n_points, expected):
    settings = DynamicsSettings(id_methods=("twonn",), topology=False, w2_method=method, exact_w2_max_n=120)
    points = torch.cat([cloud, cloud[:1] + 0.5])[:n_points]
    values = run_probes(1, snapshot(points + 0.1), settings, previous=snapshot(points)).values
    w2 = {metric: value for (_, metric), value in values.items()
          if metric.startswith("drift_prev_w2") and not metric.endswith("_converged")}
    assert values.get(("layer", "drift_prev_w2_converged")) == (1.0 if expected == "drift_prev_w2" else None)
    references = {"w2": lambda: probes.wasserstein(points + 0.1, points, method="exact"),
                  "sliced": lambda: probes.wasserstein(points + 0.1, points, method="sliced", n_projections=128,
                                                       seed=0),
                  "paired": lambda: 0.1 * math.sqrt(6)}  # a translation by (0.1, ..., 0.1)
    assert w2 == {expected: pytest.approx(references[expected.rsplit("_", 1)[1]](), rel=1e-9)}
    assert Dynamics.family_of(expected).key == "drift"
    assert metric_title(expected).endswith({"w2": "W2", "sliced": "W2 (sliced)", "paired": "W2 (paired)"}[
        expected.rsplit("_", 1)[1]])


def test_an_exact_w2_stopped_by_its_budget_is_nan_marked_and_warned_once(cloud, recwarn):
    """50 network-simplex pivots cannot solve these 120-point problems: each exact W2 is NaN with
    its ``_converged`` marker 0, and one warning for the epoch names every such value and the
    setting to raise; sliced values have no marker; the default budget solves them."""
    settings = DynamicsSettings(id_methods=("twonn",), topology=False, exact_w2_max_iter=50)
    other = torch.randn(120, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    values = run_probes(1, snapshot(other, with_input=True), settings, previous=snapshot(cloud),
                        pool=ProbePool(workers=1)).values
    for metric in ("drift_prev_w2", "stability_w2"):
        assert math.isnan(values[("layer", metric)]) and values[("layer", f"{metric}_converged")] == 0.0
    stopped = [str(w.message) for w in recwarn if "exact_w2_max_iter" in str(w.message)]
    assert stopped == ["dynamics: 2 exact W2 value(s) (drift_prev_w2 of layer, stability_w2 of layer) stopped at "
                       "exact_w2_max_iter=50 network-simplex pivots before optimality; logged as NaN with "
                       "<metric>_converged = 0. Raise dynamics.exact_w2_max_iter "
                       "(train.py: --dynamics.exact_w2_max_iter; "
                       "probe.py: --dynamics.exact_w2_max_iter N)."]
    assert not [w for w in recwarn if "num_iter_max" in str(w.message)], "the probe's own warning is left out"
    solved = run_probes(1, snapshot(other, with_input=True), SETTINGS, previous=snapshot(cloud)).values
    assert solved[("layer", "drift_prev_w2_converged")] == solved[("layer", "stability_w2_converged")] == 1.0
    assert solved[("layer", "drift_prev_w2")] == pytest.approx(probes.wasserstein(other, cloud), rel=1e-12)


def test_a_scikit_dimension_estimator_runs_beside_the_shared_neighbour_pass(cloud):
    settings = DynamicsSettings(id_methods=("lpca", "twonn", "mle"), topology=False, capture_inputs=False)
    values = run_probes(0, snapshot(cloud), settings).values
    assert [metric for _, metric in values if metric.startswith("id_")] == ["id_lpca", "id_twonn", "id_mle"]
    assert values[("layer", "id_lpca")] == probes.intrinsic_dimension(cloud, "lpca")
    assert values[("layer", "id_mle")] == probes.intrinsic_dimensions(cloud, ("twonn", "mle"))["mle"]
