"""fit_head: with its defaults at the optimum of the digit-rows instance, deterministic per seed."""

import math
import re
import warnings

import pytest
import torch

from attnconv_pl.errors import ConfigError
from attnconv_pl.heads import ConvergenceWarning, attention_lifting, fit_head, lifted_predict
from attnconv_pl.heads.fit import DEFAULT_STALL_TOL, DEFAULT_STEPS

BETA = 1e-3


def proximal_gradient_optimum(tokens, targets, beta, iterations=1500):
    """The optimum of linear attention's convex program by accelerated proximal gradient (FISTA,
    singular-value thresholding) on its explicit lifting: an independent convex solver
    (1500 iterations: within 2e-4 of the optimum here)."""
    lifting = attention_lifting(tokens, targets.shape[1])
    n, c = targets.shape
    p, q = lifting.block_shape
    features = lifting.dense_features().reshape(n, -1)
    step = n / torch.linalg.matrix_norm(features, ord=2) ** 2
    Z = W = torch.zeros(1, p, q, dtype=torch.float64)
    t = 1.0
    for _ in range(iterations):
        gradient = (features.T @ (features @ W.reshape(-1, c) - targets) / n).reshape(1, p, q)
        U, S, Vh = torch.linalg.svd(W - step * gradient, full_matrices=False)
        Z_next = U @ torch.diag_embed((S - step * beta).clamp_min(0)) @ Vh
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        W, Z, t = Z_next + (t - 1) / t_next * (Z_next - Z), Z_next, t_next
    residual = lifted_predict(lifting, Z) - targets
    return float(0.5 * residual.pow(2).sum() / n + beta * torch.linalg.matrix_norm(Z, ord="nuc").sum())


def test_the_default_fit_reaches_the_optimum_of_digit_rows(digit_rows):
    tokens, targets = digit_rows
    fitted = fit_head("linear_attention", tokens, targets, BETA)
    reference = proximal_gradient_optimum(tokens, targets, BETA)
    assert fitted.objective == pytest.approx(reference, rel=1e-3)
    assert 0 <= fitted.duality_gap <= 1e-3 * fitted.objective
    assert 1 < fitted.rank < 64  # the head has max_rank = 64 units; the optimum needs fewer


def test_a_fit_is_fixed_by_its_seed(small_instance):
    tokens, targets = small_instance
    first, second, other = (fit_head("gated_relu_attention", tokens, targets, BETA, heads=2, gates=2, steps=100, seed=s)
                            for s in (3, 3, 4))
    assert first.objective == second.objective
    assert all(torch.equal(first.parameters[name], second.parameters[name]) for name in first.parameters)
    assert not torch.equal(first.parameters["A"], other.parameters["A"])


@pytest.mark.parametrize("name", ["linear", "mlp", "attention"])
def test_heads_without_convex_form_fit_without_a_gap(name, small_instance):
    tokens, targets = small_instance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the budget's warning has its own test
        fitted = fit_head(name, tokens, targets, BETA, steps=50)
    assert math.isnan(fitted.duality_gap) and fitted.rank == -1
    assert fitted.objective == pytest.approx(fitted.data_loss + fitted.regulariser)
    assert fitted.data_loss < 0.5 * float(targets.pow(2).sum(dim=1).mean())  # better than predicting 0
    assert fitted.converged == (fitted.residual <= DEFAULT_STALL_TOL)


def test_a_linear_head_stops_at_the_ridge_regression_optimum(small_instance):
    """The linear head's objective is ridge regression on the mean token (the bias decayed too):
    its stationary point is the closed-form solution."""
    tokens, targets = small_instance
    fitted = fit_head("linear", tokens, targets, BETA)
    assert fitted.converged and fitted.residual <= DEFAULT_STALL_TOL and fitted.iterations < DEFAULT_STEPS
    features = torch.cat([tokens.mean(dim=1), torch.ones(len(tokens), 1, dtype=tokens.dtype)], dim=1)
    n, width = features.shape
    weights = torch.linalg.solve(features.T @ features / n + BETA * torch.eye(width, dtype=tokens.dtype),
                                 features.T @ targets / n)
    optimum = 0.5 * (features @ weights - targets).pow(2).sum() / n + 0.5 * BETA * weights.pow(2).sum()
    assert fitted.objective == pytest.approx(float(optimum), rel=1e-9)


def test_a_fit_that_runs_out_of_steps_says_so_and_warns_once(small_instance):
    tokens, targets = small_instance
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = fit_head("attention", tokens, targets, BETA, heads=2, steps=30, check_every=10)
    assert not fitted.converged and fitted.iterations == 30 and fitted.residual > DEFAULT_STALL_TOL
    assert [str(warning.message) for warning in caught if warning.category is ConvergenceWarning] == [
        f"fit_head('attention') stopped at its budget of 30 L-BFGS iterations before converging: its objective "
        f"still fell by {fitted.residual:.3g} per iteration (relative) > stall_tol 1e-08; raise steps"]
    objectives = [objective for _, objective, _ in fitted.history]
    assert fitted.residual == pytest.approx((objectives[-2] - objectives[-1]) / objectives[-1] / 10)


def test_the_history_records_every_certificate_down_to_the_result(small_instance):
    """L-BFGS with a strong Wolfe line search never raises the objective; every recorded gap is
    a valid bound (>= 0) and the last entry is the returned fit."""
    tokens, targets = small_instance
    with pytest.warns(ConvergenceWarning, match="duality gap is .* of the objective > gap_tol 0; raise steps"):
        fitted = fit_head("linear_attention", tokens, targets, BETA, steps=200, check_every=40, gap_tol=0.0)
    assert not fitted.converged and fitted.residual == fitted.duality_gap / fitted.objective
    assert [iterations for iterations, _, _ in fitted.history] == [40, 80, 120, 160, 200]
    objectives = [objective for _, objective, _ in fitted.history]
    assert all(later <= earlier * (1 + 1e-12) for earlier, later in zip(objectives, objectives[1:]))
    assert all(gap >= 0 for _, _, gap in fitted.history)
    assert fitted.history[-1][1:] == (fitted.objective, fitted.duality_gap)


@pytest.mark.parametrize(("setting", "value", "message"), [
    ("beta", -1.0, "beta must be a finite number >= 0"),
    ("beta", math.nan, "beta must be a finite number >= 0"),
    ("heads", 0, "linear_attention: heads must be an integer >= 1 (units per block), got 0"),
    ("steps", 0, "steps must be an integer >= 1"),
    ("gap_tol", -1e-4, "gap_tol must be a finite number >= 0"),
])
def test_a_setting_out_of_range_is_refused_before_fitting(setting, value, message, small_instance):
    tokens, targets = small_instance
    settings = {"beta": BETA, setting: value}
    with pytest.raises(ConfigError, match=re.escape(message)):
        fit_head("linear_attention", tokens, targets, **settings)
