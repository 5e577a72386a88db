"""The non-convex heads against the exact optimum of their convex programs (CVXPY)."""

import sys
import warnings

import pytest
import torch

from attnconv_pl.heads import ConvergenceWarning, certificate, create_head, fit_head, lifted_predict, solve_convex

CONVEX = [("linear_attention", {}), ("gated_relu_attention", {"gates": 2}), ("mixer", {"gates": 2}), ("fno", {})]
BETA = 1e-3
SOLVER_SLACK = 1e-6
"""Relative accuracy of CLARABEL's optimum."""


@pytest.fixture(scope="module")
def optima(small_instance):
    pytest.importorskip("cvxpy")
    tokens, targets = small_instance
    return {name: solve_convex(name, tokens, targets, BETA, **options) for name, options in CONVEX}


@pytest.mark.parametrize("name, options", CONVEX)
def test_heads_reach_the_convex_optimum_once_they_have_its_rank(name, options, small_instance, optima):
    tokens, targets = small_instance
    optimum = optima[name]
    assert optimum.rank > 1
    with pytest.warns(ConvergenceWarning, match="raise steps, or heads: the fit uses all its 1 units per block"):
        too_few = fit_head(name, tokens, targets, BETA, heads=1, steps=200, **options)
    enough = fit_head(name, tokens, targets, BETA, heads=optimum.rank, **options)
    assert enough.converged and not too_few.converged
    for fitted in (too_few, enough):
        assert fitted.objective >= optimum.objective * (1 - SOLVER_SLACK)
    assert too_few.objective > optimum.objective * (1 + 1e-2)
    assert enough.objective <= optimum.objective * (1 + 1e-3)
    assert enough.rank == optimum.rank


@pytest.mark.parametrize("name, options", CONVEX)
def test_the_gap_vanishes_at_the_exact_optimum(name, options, small_instance, optima):
    tokens, targets = small_instance
    optimum = optima[name]
    lifting = create_head(name, 4, 3, 4, heads=1, **options).double().lifting(tokens)
    nuclear = float(torch.linalg.matrix_norm(optimum.Z, ord="nuc").sum())
    result = certificate(lifting, lifted_predict(lifting, optimum.Z), targets, BETA, BETA * nuclear,
                         torch.linalg.svdvals(optimum.Z))
    assert result.objective == pytest.approx(optimum.objective, rel=SOLVER_SLACK)
    assert 0 <= result.duality_gap <= 1e-3 * result.objective


def test_scs_finds_the_same_optimum(small_instance, optima):
    tokens, targets = small_instance
    scs = solve_convex("linear_attention", tokens, targets, BETA, solver="SCS")
    assert scs.objective == pytest.approx(optima["linear_attention"].objective, rel=1e-3)


def test_a_solver_stopped_at_its_limit_is_marked_and_warns(small_instance, optima):
    tokens, targets = small_instance
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        early = solve_convex("linear_attention", tokens, targets, BETA, solver="SCS", solver_options={"max_iters": 5})
    assert early.status == "optimal_inaccurate" and not early.converged and early.iterations == 5
    assert abs(early.objective - optima["linear_attention"].objective) > 1e-3  # not the optimum: hence the mark
    assert [str(warning.message) for warning in caught] == [
        "solve_convex('linear_attention'): SCS stopped before its tolerances held (status optimal_inaccurate, "
        "5 iterations); raise solver_options['max_iters'] or try solver='CLARABEL'"]
    assert optima["linear_attention"].converged


def test_a_solver_without_a_solution_raises_with_its_status(small_instance):
    pytest.importorskip("cvxpy")
    tokens, targets = small_instance
    with pytest.raises(ValueError, match=r"CLARABEL found no solution .*status user_limit; "
                                         r"raise solver_options\['max_iter'\] or try solver='SCS'"):
        solve_convex("linear_attention", tokens, targets, BETA, solver_options={"max_iter": 3})


def test_without_cvxpy_the_error_says_how_to_install_it(small_instance, monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    tokens, targets = small_instance
    with pytest.raises(ImportError, match=r'pip install -e "\.\[dev\]".*pip install cvxpy'):
        solve_convex("linear_attention", tokens, targets, BETA)
