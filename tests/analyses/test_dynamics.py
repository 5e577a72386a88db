"""The dynamics runner on hand-made snapshots: closed-form drift, the probes' own values, state."""

import math

import pytest
import torch

from attnconv_pl import probes
from attnconv_pl.analyses.dynamics import Dynamics, DynamicsSettings

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
