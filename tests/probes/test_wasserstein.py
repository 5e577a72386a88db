import math
import warnings

import numpy as np
import ot
import pytest
import scipy.optimize
import scipy.stats
import torch

from attnconv_pl.probes import paired_displacement, wasserstein


def cloud(n: int, d: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def pot_reference(x: torch.Tensor, y: torch.Tensor, p: float) -> float:
    """W_p by ot.emd2 on POT's own Euclidean (not squared) distance matrix."""
    cost = ot.dist(x.numpy(), y.numpy(), metric="euclidean") ** p
    return ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost, numItermax=10**7) ** (1 / p)


@pytest.mark.parametrize("method", ["exact", "sliced"])
@pytest.mark.parametrize("p", [1, 2])
def test_a_translated_cloud_is_at_distance_the_norm_of_the_translation(p, method):
    x = cloud(150, 5, seed=0)
    v = torch.tensor([0.3, -1.0, 2.0, 0.0, 0.5], dtype=torch.float64)
    kw = {"n_projections": 4000} if method == "sliced" else {}
    tolerance = 1e-9 if method == "exact" else 0.03
    assert wasserstein(x, x + v, p=p, method=method, **kw) == pytest.approx(float(v.norm()), rel=tolerance)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("sizes", [(120, 120), (120, 70)], ids=["n=m", "n!=m"])
def test_exact_matches_pot_emd2_with_euclidean_cost(sizes, p):
    x, y = cloud(sizes[0], 8, seed=1), cloud(sizes[1], 8, seed=2) + 0.5
    assert wasserstein(x, y, p=p) == pytest.approx(pot_reference(x, y, p), rel=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_exact_with_equal_sizes_is_the_optimal_assignment(p):
    """Between n and n points an optimal coupling is a permutation (Birkhoff): scipy's
    linear_sum_assignment on the same costs is an independent exact solver."""
    x, y = cloud(300, 64, seed=7), 1.5 * cloud(300, 64, seed=8) + 0.2
    cost = ot.dist(x.numpy(), y.numpy(), metric="euclidean") ** p
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    assert wasserstein(x, y, p=p) == pytest.approx(cost[rows, cols].mean() ** (1 / p), rel=1e-12)


@pytest.mark.parametrize("p", [1, 2])
def test_one_dimensional_clouds_match_the_sorting_closed_form(p):
    x, y = cloud(200, 1, seed=3), 2 * cloud(200, 1, seed=4) + 1
    by_sorting = np.mean(np.abs(np.sort(x.numpy()[:, 0]) - np.sort(y.numpy()[:, 0])) ** p) ** (1 / p)
    assert wasserstein(x, y, p=p) == pytest.approx(by_sorting, rel=1e-9)


def test_one_dimensional_w1_with_unequal_sizes_matches_scipy():
    x, y = cloud(90, 1, seed=5), cloud(140, 1, seed=6) * 3
    assert wasserstein(x, y, p=1) == pytest.approx(scipy.stats.wasserstein_distance(x[:, 0], y[:, 0]), rel=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_sliced_is_a_lower_bound_close_to_exact_for_gaussian_shifts(p):
    x, y = cloud(300, 6, seed=7), cloud(300, 6, seed=8) + torch.tensor([3.0, 0, 0, 0, 0, 0], dtype=torch.float64)
    exact, sliced = wasserstein(x, y, p=p), wasserstein(x, y, p=p, method="sliced", n_projections=2000)
    assert 0.7 * exact < sliced < 1.02 * exact


def test_sliced_is_seeded():
    x, y = cloud(100, 10, seed=9), cloud(100, 10, seed=10)
    assert wasserstein(x, y, method="sliced", seed=3) == wasserstein(x, y, method="sliced", seed=3)
    assert wasserstein(x, y, method="sliced", seed=3) != wasserstein(x, y, method="sliced", seed=4)


@pytest.mark.parametrize("p", [1, 2])
def test_sinkhorn_is_an_upper_bound_whose_bias_shrinks_with_reg(p):
    x, y = cloud(200, 3, seed=11), cloud(200, 3, seed=12) + torch.tensor([1.5, 0, 0], dtype=torch.float64)
    exact = wasserstein(x, y, p=p)
    loose = wasserstein(x, y, p=p, method="sinkhorn", reg=0.05)
    tight = wasserstein(x, y, p=p, method="sinkhorn", reg=0.01, num_iter_max=5000)
    assert exact < tight < loose
    assert tight - exact < (loose - exact) / 2
    assert tight == pytest.approx(exact, rel=0.12)


@pytest.mark.parametrize("method", ["exact", "sliced", "sinkhorn"])
def test_float32_and_float64_agree(method):
    x, y = cloud(100, 16, seed=13) + 4, cloud(80, 16, seed=14) + 4.5
    assert wasserstein(x.float(), y.float(), method=method) == pytest.approx(wasserstein(x, y, method=method), rel=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [1, 2])
def test_identical_clouds_are_at_distance_exactly_zero(p, dtype):
    """As POT's own Euclidean cost gives: the Gram-matrix shortcut alone left ~1e-8."""
    x = cloud(200, 1024, seed=15, dtype=dtype) + 3.0
    assert wasserstein(x, x, p=p, method="exact") == 0.0
    assert wasserstein(x, x[torch.randperm(200, generator=torch.Generator().manual_seed(0))], p=p) == 0.0
    assert wasserstein(torch.zeros(5, 3), torch.zeros(8, 3), method="sinkhorn") == 0.0


@pytest.mark.parametrize("p", [1, 2])
def test_a_tiny_translation_in_high_dimension_is_measured_to_working_precision(p):
    """A shift by 1e-6 per coordinate in d = 1024 came out 11% off with the shortcut alone."""
    x = cloud(200, 1024, seed=16)
    v = torch.full((1024,), 1e-6, dtype=torch.float64)
    assert wasserstein(x, x + v, p=p, method="exact") == pytest.approx(float(v.norm()), rel=1e-7)


def test_paired_displacement_is_the_mean_distance_and_bounds_w1():
    x, y = cloud(60, 5, seed=16), cloud(60, 5, seed=17)
    assert paired_displacement(x, y) == pytest.approx(np.linalg.norm((x - y).numpy(), axis=1).mean(), rel=1e-12)
    assert paired_displacement(x, y) >= wasserstein(x, y, p=1)
    small_drift = x + 1e-3 * y
    assert paired_displacement(x, small_drift) == pytest.approx(wasserstein(x, small_drift, p=1), rel=1e-9)


def test_paired_displacement_of_order_two_bounds_w2_and_equals_it_for_a_translation():
    x, y = cloud(60, 5, seed=16), cloud(60, 5, seed=17)
    expected = np.sqrt(np.mean(np.sum((x - y).numpy() ** 2, axis=1)))
    assert paired_displacement(x, y, p=2) == pytest.approx(expected, rel=1e-12)
    assert paired_displacement(x, y, p=2) >= wasserstein(x, y, p=2)
    v = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.25], dtype=torch.float64)
    assert paired_displacement(x, x + v, p=2) == pytest.approx(float(v.norm()), rel=1e-12)


def test_bad_arguments_are_rejected_with_the_reason():
    x = cloud(10, 4, seed=18)
    with pytest.raises(ValueError, match=r"shape \(10, 4\).*shape \(10, 3\).*same width"):
        wasserstein(x, x[:, :3])
    with pytest.raises(ValueError, match=r"same number of points"):
        paired_displacement(x, x[:5])
    with pytest.raises(ValueError, match="method"):
        wasserstein(x, x, method="greedy")
    with pytest.raises(ValueError, match="p >= 1"):
        wasserstein(x, x, p=0.5)
    with pytest.raises(TypeError):
        wasserstein(x, x, method="exact", reg=0.1)


def test_exact_says_it_converged_and_equals_the_optimal_assignment():
    x, y = cloud(200, 5, seed=19), cloud(200, 5, seed=20) + 0.3
    cost = ot.dist(x.numpy(), y.numpy(), metric="euclidean") ** 2
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    value, stop = wasserstein(x, y, p=2, log=True)
    assert stop == {"converged": True}
    assert value == pytest.approx(cost[rows, cols].mean() ** 0.5, rel=1e-12)


@pytest.mark.parametrize("filters", ["default", "ignore", "error"])
def test_exact_stopped_by_its_budget_is_nan_marked_and_warned_once_whatever_the_filters(filters):
    """50 pivots leave this 200-point problem unsolved (POT's result code 3, numItermax reached):
    its cost is then no bound on W2, so NaN with converged False, read from the result code, not
    from POT's warning, so the warnings filters (even "error") change nothing but our own message."""
    x, y = cloud(200, 5, seed=19), cloud(200, 5, seed=20) + 0.3
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter(filters)
        warnings.filterwarnings("always", category=RuntimeWarning, module=__name__)
        value, stop = wasserstein(x, y, p=2, log=True, num_iter_max=50)
    assert math.isnan(value) and stop == {"converged": False}
    assert [str(w.message) for w in caught if w.category is not DeprecationWarning] == [
        "wasserstein(method='exact'): no optimal plan within num_iter_max=50 network-simplex pivots (n=200, "
        "m=200; POT: 'numItermax reached before optimality. Try to increase numItermax.'); returning NaN. "
        "Raise num_iter_max."]


def test_sinkhorn_reports_its_marginal_error_and_warns_once_when_stopped_by_its_budget():
    """The marginal error is that of the plan returned, as POT's own plan (``ot.sinkhorn``) has it."""
    x, y = cloud(150, 3, seed=21), cloud(150, 3, seed=22) + 1.0
    cost = ot.dist(x.numpy(), y.numpy(), metric="euclidean") ** 2
    weights = np.full(150, 1 / 150)
    for num_iter_max in (20, 1000):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value, stop = wasserstein(x, y, p=2, method="sinkhorn", reg=0.01, num_iter_max=num_iter_max, log=True)
        plan = ot.sinkhorn(weights, weights, cost / cost.max(), 0.01, numItermax=num_iter_max, warn=False)
        assert stop["marginal_error"] == pytest.approx(np.linalg.norm(plan.sum(0) - weights), rel=1e-6, abs=1e-12)
        assert value == pytest.approx(np.sqrt(np.sum(plan * cost)), rel=1e-9)
        assert stop["converged"] == (stop["marginal_error"] < 1e-9) == (num_iter_max == 1000)
        messages = [str(w.message) for w in caught if w.category is not DeprecationWarning]
        assert messages == ([] if stop["converged"] else [
            f"wasserstein(method='sinkhorn'): stopped after 20 of num_iter_max=20 iterations with marginal error "
            f"{stop['marginal_error']:.3g} above stop_threshold=1e-09; the value is not a bound on W_p. Raise "
            "num_iter_max (or reg)."])


def test_sliced_does_not_iterate_and_reports_nothing():
    x = cloud(50, 4, seed=23)
    assert wasserstein(x, x + 1, method="sliced", log=True)[1] == {}
