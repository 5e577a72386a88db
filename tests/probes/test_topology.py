import math

import gudhi
import gudhi.hera
import numpy as np
import pytest
import torch
from gudhi.wasserstein import wasserstein_distance

from attnconv_pl.probes import diagram_distance, persistence_diagrams
from attnconv_pl.probes.common_birth import has_common_birth
from attnconv_pl.probes.topology import _farthest_point_indices


def noisy_circle(n: int, radius: float, noise: float, ambient: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    angle = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    circle = torch.zeros(n, ambient, dtype=torch.float64)
    circle[:, 0], circle[:, 1] = radius * angle.cos(), radius * angle.sin()
    return circle + noise * torch.randn(n, ambient, generator=g, dtype=torch.float64)


def persistence(diagram: np.ndarray) -> np.ndarray:
    return np.sort(diagram[:, 1] - diagram[:, 0])[::-1]


@pytest.mark.parametrize("subsample", ["farthest", "random"])
def test_a_noisy_circle_has_one_prominent_h1_class_dying_at_sqrt3_r(subsample):
    radius = 2.0
    h0, h1 = persistence_diagrams(noisy_circle(600, radius, 0.03, 5, seed=0), max_points=200, subsample=subsample)
    lifetimes = persistence(h1)
    assert lifetimes[0] > radius and (len(lifetimes) == 1 or lifetimes[1] < 0.2 * radius)
    assert h1[np.argmax(h1[:, 1] - h1[:, 0]), 1] == pytest.approx(math.sqrt(3) * radius, rel=0.05)
    assert len(h0) == 199 and (h0[:, 0] == 0).all()


def test_k_separated_clusters_give_k_minus_1_long_h0_bars():
    g = torch.Generator().manual_seed(1)
    centres = 10 * torch.eye(4, 6, dtype=torch.float64)
    points = (centres[:, None, :] + 0.1 * torch.randn(4, 50, 6, generator=g, dtype=torch.float64)).reshape(200, 6)
    lifetimes = persistence(persistence_diagrams(points, max_dim=0)[0])
    assert (lifetimes > 5).sum() == 3 and (lifetimes[3:] < 1).all()


def test_diagrams_equal_gudhi_rips_complex_on_the_full_filtration():
    points = noisy_circle(40, 1.0, 0.2, 3, seed=2)
    tree = gudhi.RipsComplex(points=points.numpy()).create_simplex_tree(max_dimension=2)
    tree.compute_persistence()
    ours = persistence_diagrams(points)
    for dim in (0, 1):
        reference = tree.persistence_intervals_in_dimension(dim)
        reference = reference[np.isfinite(reference[:, 1]) & (reference[:, 1] > reference[:, 0])]
        assert np.allclose(np.sort(ours[dim], axis=0), np.sort(reference, axis=0), atol=1e-9)


def test_farthest_point_sample_covers_the_cloud_within_its_own_separation():
    points = torch.randn(300, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    chosen = points[_farthest_point_indices(points, 30, seed=0)]
    covering_radius = torch.cdist(points, chosen).min(1).values.max()
    separation = torch.pdist(chosen).min()
    assert covering_radius <= separation + 1e-12
    assert not torch.equal(_farthest_point_indices(points, 30, seed=0), _farthest_point_indices(points, 30, seed=1))


def test_float32_and_float64_give_the_same_diagrams():
    points = noisy_circle(150, 1.0, 0.1, 8, seed=4) + 3
    for ours32, ours64 in zip(persistence_diagrams(points.float()), persistence_diagrams(points)):
        assert len(ours32) == len(ours64)
        assert gudhi.bottleneck_distance(ours32, ours64) < 1e-5


@pytest.mark.parametrize("points", [torch.zeros(10, 3), torch.ones(1, 3)], ids=["identical", "single"])
def test_degenerate_clouds_give_empty_diagrams(points):
    assert [d.shape for d in persistence_diagrams(points, max_dim=2)] == [(0, 2)] * 3


DIAGRAM = [[0.0, 4.0], [1.0, 2.0]]


@pytest.mark.parametrize(
    ("d1", "d2", "expected"),
    [
        ([[0.0, 1.0]], [[0.0, 2.0]], {1: 1.0, 2: 1.0, math.inf: 1.0}),
        ([[0.0, 1.0]], [], {1: 1 / math.sqrt(2), 2: 1 / math.sqrt(2), math.inf: 0.5}),
        (DIAGRAM, [[0.0, 4.5]], {1: 0.5 + 1 / math.sqrt(2), 2: math.sqrt(0.25 + 0.5), math.inf: 0.5}),
        (np.zeros((0, 2)), np.zeros((0,)), {1: 0.0, 2: 0.0, math.inf: 0.0}),
        (DIAGRAM + [[3.0, 3.0]], DIAGRAM, {1: 0.0, 2: 0.0, math.inf: 0.0}),
    ],
    ids=["match", "to_diagonal", "mixed", "empty", "diagonal_point"],
)
def test_diagram_distances_match_hand_computed_values(d1, d2, expected):
    for p, value in expected.items():
        assert diagram_distance(d1, d2, p) == pytest.approx(value, abs=1e-12)
        assert diagram_distance(d2, d1, p) == pytest.approx(value, abs=1e-12)


def test_diagram_distances_agree_with_gudhi_on_real_diagrams():
    first = persistence_diagrams(noisy_circle(120, 1.0, 0.1, 3, seed=5))
    second = persistence_diagrams(noisy_circle(100, 1.3, 0.2, 3, seed=6))
    for a, b in zip(first, second):
        assert diagram_distance(a, b, 1) == pytest.approx(wasserstein_distance(a, b, order=1, internal_p=2))
        assert diagram_distance(a, b, 2) == pytest.approx(wasserstein_distance(a, b, order=2, internal_p=2))
        assert diagram_distance(torch.from_numpy(a), b, math.inf) == pytest.approx(gudhi.bottleneck_distance(a, b))


@pytest.mark.parametrize("seed", [0, 1])
def test_distances_between_h1_diagrams_equal_heras_auction(seed):
    """W1/W2 between H1 diagrams (births differ: the optimal-transport path) equal those of an
    independent solver, Hera's auction at relative error 1e-8, to float round-off."""
    generator = torch.Generator().manual_seed(seed)
    first = persistence_diagrams(torch.randn(150, 8, generator=generator))[1]
    second = persistence_diagrams(1.2 * torch.randn(150, 8, generator=generator))[1]
    assert len(first) > 20 and len(second) > 20 and not has_common_birth(first, second)
    for order in (1, 2):
        auction = gudhi.hera.wasserstein_distance(first, second, order=order, internal_p=2, delta=1e-8)
        assert diagram_distance(first, second, order) == pytest.approx(auction, rel=1e-12)


def test_bad_diagrams_and_orders_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match="d1: holds infinite"):
        diagram_distance([[0.0, math.inf]], [], 1)
    with pytest.raises(ValueError, match=r"d2: got shape \(3,\)"):
        diagram_distance([], [0.0, 1.0, 2.0], 2)
    with pytest.raises(ValueError, match=r"d1: got shape \(4, 0\)"):  # empty, yet not (m, 2)
        diagram_distance(np.zeros((4, 0)), [], 1)
    with pytest.raises(ValueError, match="death >= birth"):
        diagram_distance([[2.0, 1.0]], [], 1)
    with pytest.raises(ValueError, match="p: got 3"):
        diagram_distance([], [], 3)
    with pytest.raises(ValueError, match="subsample"):
        persistence_diagrams(torch.zeros(5, 2), subsample="grid")
