"""The diffusion limit of softmax attention with a distance score (docs/diffusion_maths.py).

(P_eps H - H) / eps with the kernel exp(-||x - y||^2 / eps) must match c (Lap H + 2 grad log p . grad H)
with c = 1/4 (derived in docs/diffusion_maths.py), on samples within their noise, on the continuum
within its O(eps) bias; c = 1/2 must fail the same tolerances.
"""

import importlib.util

import numpy as np
import pytest
from train_helpers import REPO

spec = importlib.util.spec_from_file_location("diffusion_maths", REPO / "docs" / "diffusion_maths.py")
dm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dm)

WRONG_C = 0.5


def test_circle_samples_match_a_quarter_of_the_drift_diffusion():
    theta = dm.sample_circle(2000, np.random.default_rng(0))
    x, h = dm.circle_points(theta), dm.circle_tests(theta)[0][:, :1]   # H = cos(2 theta)
    reference = dm.circle_reference(theta)[:, :1]
    estimate = dm.generator(x, x, h, h, eps=0.05)
    # noise ~ (n eps^1.5)^-1/2 and bias ~ 0.47 eps: about 0.26 of the operator's RMS
    assert dm.relative_rms(estimate, dm.C_THEORY * reference)[0] < 0.4
    assert dm.relative_rms(estimate, WRONG_C * reference)[0] > 0.4
    assert abs(dm.fitted_constant(estimate, reference)[0] - 0.25) < 0.04


@pytest.mark.parametrize("case", ["circle", "sphere"])
def test_continuum_bias_is_first_order_in_eps(case):
    rng = np.random.default_rng(1)
    if case == "circle":
        theta = dm.sample_circle(100, rng)
        operator, reference = (lambda eps: dm.circle_continuum(theta, eps)), dm.circle_reference(theta)
    else:
        x = dm.sample_sphere(100, rng)
        operator, reference = (lambda eps: dm.sphere_continuum(x, eps)), dm.sphere_reference(x)
    small, large = operator(3e-3), operator(3e-2)
    assert np.all(dm.relative_rms(small, dm.C_THEORY * reference) < 3e-3)
    assert np.all(dm.relative_rms(small, WRONG_C * reference) > 0.4)
    ratio = dm.relative_rms(large, dm.C_THEORY * reference) / dm.relative_rms(small, dm.C_THEORY * reference)
    assert np.all((ratio > 8) & (ratio < 12))                          # O(eps): a factor 10 in eps


def test_learned_metric_on_a_curve_gives_the_induced_drift_diffusion():
    w = np.array([[2.0, 0.5], [0.0, 1.0]])                             # the circle becomes an ellipse
    grid = np.arange(4096) * 2 * np.pi / 4096
    theta = dm.sample_circle(100, np.random.default_rng(2))
    speed_sq, speed_sq_d = dm.ellipse_speed(theta, w @ [1.0, 0.0], w @ [0.0, 1.0])
    _, h1, h2 = dm.circle_tests(theta)
    reference = np.stack([dm.curve_operator(theta, h1[:, f], h2[:, f], speed_sq, speed_sq_d) for f in range(2)], 1)
    estimate = dm.generator(dm.circle_points(theta) @ w.T, dm.circle_points(grid) @ w.T, dm.circle_tests(grid)[0],
                            dm.circle_tests(theta)[0], 1e-3, 1 + dm.CIRCLE_A * np.cos(grid))
    assert np.all(dm.relative_rms(estimate, dm.C_THEORY * reference) < 5e-3)
    unit_metric = np.stack([dm.curve_operator(theta, h1[:, f], h2[:, f]) for f in range(2)], 1)
    assert np.all(dm.relative_rms(estimate, dm.C_THEORY * unit_metric) > 0.1)


def test_two_projections_jump_to_the_nearest_key_instead_of_diffusing():
    grid = np.arange(4096) * 2 * np.pi / 4096
    theta = dm.sample_circle(50, np.random.default_rng(3))
    shift = np.array([0.3, 0.0])                                       # W_q x = x + b_q, W_k = I
    queries, keys = dm.circle_points(theta) + shift, dm.circle_points(grid)
    nearest = np.arctan2(queries[:, 1], queries[:, 0])                 # the key nearest each query
    jump = dm.circle_tests(nearest)[0] - dm.circle_tests(theta)[0]
    for eps in (1e-3, 1e-4):
        estimate = dm.generator(queries, keys, dm.circle_tests(grid)[0], dm.circle_tests(theta)[0], eps,
                                1 + dm.CIRCLE_A * np.cos(grid))
        assert np.all(dm.relative_rms(eps * estimate, jump) < 50 * eps)   # grows like 1 / eps
