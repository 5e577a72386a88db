import math

import numpy as np
import pytest
from gudhi.wasserstein import wasserstein_distance

from attnconv_pl.probes.common_birth import common_birth_wasserstein, has_common_birth


def line_diagram(lifetimes, birth: float = 0.0) -> np.ndarray:
    lifetimes = np.asarray(lifetimes, dtype=np.float64)
    return np.stack([np.full_like(lifetimes, birth), birth + lifetimes], axis=1).reshape(-1, 2)


@pytest.mark.parametrize("order", [1, 2])
def test_equals_gudhi_optimal_transport_on_random_diagrams(order):
    rng = np.random.default_rng(0)
    for _ in range(150):
        n, m = rng.integers(0, 40, size=2)
        birth = float(rng.choice([0.0, 1.5]))
        first = line_diagram(rng.exponential(size=n), birth)
        second = line_diagram(rng.exponential(size=m) * rng.uniform(0.2, 3.0), birth)
        expected = wasserstein_distance(first, second, order=order, internal_p=2)
        assert common_birth_wasserstein(first, second, order) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_leaving_a_long_bar_unmatched_beats_matching_the_longest_bars():
    # Matching the k longest bars of both sorted lists is not always optimal: for W1 the
    # optimum matches 9 with 10 and sends 11 to the diagonal (1 + 7.78 < 2 + 7.07), while
    # for W2 matching 9 with 11 wins (4 + 50 < 1 + 60.5).
    first, second = line_diagram([11.0, 10.0]), line_diagram([9.0])
    assert common_birth_wasserstein(first, second, 1) == pytest.approx(1 + 11 / math.sqrt(2))
    assert common_birth_wasserstein(first, second, 2) == pytest.approx(math.sqrt(4 + 10**2 / 2))


def test_an_empty_diagram_sends_every_point_to_the_diagonal():
    diagram = line_diagram([3.0, 4.0])
    assert common_birth_wasserstein(diagram, line_diagram([]), 2) == pytest.approx(5 / math.sqrt(2))
    assert common_birth_wasserstein(line_diagram([]), diagram, 1) == pytest.approx(7 / math.sqrt(2))
    assert common_birth_wasserstein(line_diagram([]), line_diagram([]), 1) == 0.0


def test_common_birth_is_detected_only_when_all_births_agree():
    assert has_common_birth(line_diagram([1.0, 2.0]), line_diagram([3.0]))
    assert has_common_birth(line_diagram([]), line_diagram([]))
    assert not has_common_birth(line_diagram([1.0], birth=0.0), line_diagram([1.0], birth=0.5))
    assert not has_common_birth(np.array([[0.0, 1.0], [0.2, 1.0]]), line_diagram([]))
