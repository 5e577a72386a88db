"""The non-convex heads against the exact optimum of their convex programs (CVXPY)."""

import sys

import pytest
import torch

from attnconv_pl.heads import certificate, create_head, fit_head, lifted_predict, solve_convex

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
    too_few = fit_head(name, tokens, targets, BETA, heads=1, steps=200, **options)
    enough = fit_head(name, tokens, targets, BETA, heads=optimum.rank, **options)
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


def test_without_cvxpy_the_error_says_how_to_install_it(small_instance, monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    tokens, targets = small_instance
    with pytest.raises(ImportError, match=r'pip install -e "\.\[dev\]".*pip install cvxpy'):
        solve_convex("linear_attention", tokens, targets, BETA)
