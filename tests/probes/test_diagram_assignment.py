import math

import numpy as np
import pytest
from gudhi.wasserstein import wasserstein_distance

from attnconv_pl.probes.diagram_assignment import assignment_wasserstein


def random_diagram(rng: np.random.Generator, size: int) -> np.ndarray:
    births = rng.uniform(0.0, 2.0, size=size)
    return np.stack([births, births + rng.exponential(size=size)], axis=1).reshape(-1, 2)


@pytest.mark.parametrize("order", [1, 2])
def test_equals_gudhi_optimal_transport_on_random_diagrams(order):
    rng = np.random.default_rng(0)
    for _ in range(150):
        first, second = (random_diagram(rng, size) for size in rng.integers(0, 40, size=2))
        expected = wasserstein_distance(first, second, order=order, internal_p=2)
        assert assignment_wasserstein(first, second, order) == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_hand_computed_matching_and_diagonal_costs():
    # (0, 4) against (1, 4): matching costs 1, sending both to the diagonal 4/sqrt2 + 3/sqrt2.
    assert assignment_wasserstein(np.array([[0.0, 4.0]]), np.array([[1.0, 4.0]]), 1) == pytest.approx(1.0)
    # a short bar far from the other diagram's only point goes to the diagonal (W2).
    first, second = np.array([[0.0, 10.0], [5.0, 5.2]]), np.array([[0.0, 10.0]])
    assert assignment_wasserstein(first, second, 2) == pytest.approx(0.2 / math.sqrt(2))
    empty = np.zeros((0, 2))
    assert assignment_wasserstein(empty, empty, 2) == 0.0
    assert assignment_wasserstein(np.array([[1.0, 3.0], [0.0, 2.0]]), empty, 1) == pytest.approx(4 / math.sqrt(2))


@pytest.mark.parametrize("order", [1, 2])
def test_equals_gudhi_on_larger_diagrams_with_ties_and_equals_zero_on_identical_ones(order):
    rng = np.random.default_rng(1)
    first = np.round(random_diagram(rng, 150), 1)  # rounding makes many equal points and costs
    second = np.round(random_diagram(rng, 90), 1)
    expected = wasserstein_distance(first, second, order=order, internal_p=2)
    assert assignment_wasserstein(first, second, order) == pytest.approx(expected, rel=1e-12)
    assert assignment_wasserstein(second, first, order) == pytest.approx(expected, rel=1e-12)
    assert assignment_wasserstein(first, first.copy(), order) == 0.0
