"""Fit a head by full-batch L-BFGS in float64: the Burer-Monteiro solver of its convex program.

The non-convex objective (1/2n) sum ||y_hat_i - y_i||^2 + (beta/2) sum ||theta||^2 of a
convex-capable head with m >= rank(Z*) units per block has the optimum of the convex program
(:mod:`attnconv_pl.heads.lifted`); its default m is the largest possible rank, min(p, q).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

from ._checks import check_count, check_number
from .certificate import RANK_TOL, certify
from .objective import squared_loss, weight_decay
from .registry import ConvexHead, create_head, head_options

DEFAULT_STEPS = 5000
"""Most L-BFGS iterations of :func:`fit_head` (our choice)."""
DEFAULT_GAP_TOL = 1e-4
"""Relative duality gap at which :func:`fit_head` stops (our choice): the objective is then
within 0.01% of the global optimum, in practice much closer (the gap is first order in the
distance of the predictions to the optimal ones, the objective second order)."""
DEFAULT_STALL_TOL = 1e-8
"""Relative decrease of the objective per L-BFGS iteration (averaged since the last check) at
which a head without convex form stops (our choice; 1e-6 per 100 iterations): having no
certificate, its fit can only state that it stalled. (Not a gradient norm: the ReLU of ``mlp``
makes the objective non-smooth, and its gradient stays ~1e-3 while the objective no longer
moves.)"""
CHECK_EVERY = 100
"""L-BFGS iterations between two checks of the stopping criterion."""
_TINY = 1e-300


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped at its budget before its stopping criterion held."""


@dataclass(frozen=True)
class FitResult:
    """A fitted head and its objective.

    Attributes:
        objective, data_loss, regulariser: the training objective and its two terms.
        duality_gap: objective minus a dual value (>= 0; see :mod:`.certificate`); NaN for a
            head without convex form.
        rank: max_b rank(Z_b) of the lifted blocks (-1 without convex form).
        head: the fitted module (float64, on the tokens' device).
        converged: whether the stopping criterion held (a convex-capable head: duality_gap <=
            gap_tol * objective; another head: the objective fell by at most stall_tol,
            relatively, per iteration since the previous check) before the budget of L-BFGS
            iterations ran out.
        iterations: L-BFGS iterations spent of the budget (an L-BFGS step may end early when
            its line search makes no more progress).
        residual: the number the criterion compared with its tolerance: the relative duality
            gap, or the relative decrease of the objective per iteration since the previous
            check of a head without convex form.
        history: ``(iterations, objective, duality_gap)`` at every check (every ``check_every``
            L-BFGS iterations); the gap is NaN for a head without convex form.
    """

    objective: float
    data_loss: float
    regulariser: float
    duality_gap: float
    rank: int
    head: nn.Module
    converged: bool
    iterations: int
    residual: float
    history: tuple[tuple[int, float, float], ...] = ()

    @property
    def parameters(self) -> dict[str, Tensor]:
        """The fitted parameters by name."""
        return {name: parameter.detach() for name, parameter in self.head.named_parameters()}


def lbfgs(parameters: Iterable[nn.Parameter], lr: float = 1.0, max_iter: int = CHECK_EVERY) -> torch.optim.LBFGS:
    """The L-BFGS of the heads: strong Wolfe line search, a history of 100 pairs, and
    tolerances low enough that float64 runs its ``max_iter`` iterations per step."""
    return torch.optim.LBFGS(parameters, lr=lr, max_iter=max_iter, max_eval=2 * max_iter, tolerance_grad=1e-12,
                             tolerance_change=1e-16, history_size=100, line_search_fn="strong_wolfe")


def build_head(head: str, dim: int, num_classes: int, tokens: int, heads: Optional[int], seed: int,
               **options: Any) -> nn.Module:
    """Head ``head`` in float64, initialised from ``seed`` (the global generator untouched).
    ``heads`` None: the head's default, or for a convex-capable head its ``max_rank``."""
    if heads is None and "heads" in head_options(head):
        probe = create_head(head, dim, num_classes, tokens, heads=1, **options)
        heads = probe.max_rank if isinstance(probe, ConvexHead) else None
    if heads is not None:
        options["heads"] = heads
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_head(head, dim, num_classes, tokens, **options).double()


def fit_head(head: str, tokens: Tensor, targets: Tensor, beta: float, *, heads: Optional[int] = None,
             steps: int = DEFAULT_STEPS, gap_tol: float = DEFAULT_GAP_TOL, stall_tol: float = DEFAULT_STALL_TOL,
             seed: int = 0, rank_tol: float = RANK_TOL, check_every: int = CHECK_EVERY, **options: Any) -> FitResult:
    """Minimise the head's objective on ``tokens`` (n, s, d) and ``targets`` (n, c) by L-BFGS
    (strong Wolfe line search, float64, full batch).

    Stops on a stated criterion, checked every ``check_every`` iterations: a convex-capable head
    once its duality gap is at most ``gap_tol`` times its objective (then the objective is
    within that relative distance of the global optimum), another head once its objective fell
    by at most ``stall_tol``, relatively, per iteration since the last check (it stalled). When
    ``steps`` iterations run out first, the result says ``converged=False`` and one
    :class:`ConvergenceWarning` names the setting to raise.
    Deterministic for a ``seed`` (the initialisation; gates have their own ``gate_seed``).

    Args:
        head: a registered head name.
        beta: weight-decay strength (>= 0); the regulariser is (beta/2) sum ||theta||^2.
        heads: units per block (m); None: ``max_rank`` for convex-capable heads (reaches the
            convex optimum), else the head's default.
        steps: the budget of L-BFGS iterations.
        gap_tol: relative duality gap at which a convex-capable head stops.
        stall_tol: relative decrease of the objective per iteration at which another head stops.
        rank_tol: absolute tolerance of the reported rank.
        check_every: L-BFGS iterations between two checks (each one a point of ``history``).
        **options: the head's other options (``gates``, ``gate_seed``, ``hidden``).

    Raises:
        ConfigError: a setting out of range (a negative or non-finite ``beta``, ``heads`` < 1, ...).
    """
    beta = check_number("beta", beta, meaning="the weight decay (beta/2) sum ||theta||^2")
    check_count("steps", steps, meaning="L-BFGS iterations")
    check_count("check_every", check_every, meaning="L-BFGS iterations between two checks")
    for name, value in (("gap_tol", gap_tol), ("stall_tol", stall_tol)):
        check_number(name, value, meaning="the stopping tolerance; 0 runs the whole budget")
    _, s, d = tokens.shape
    module = build_head(head, d, targets.shape[1], s, heads, seed, **options).to(tokens.device)
    tokens, targets = tokens.double(), targets.double()
    optimizer = lbfgs(module.parameters())
    convex = isinstance(module, ConvexHead)

    def objective() -> Tensor:
        return squared_loss(module(tokens), targets) + beta * weight_decay(module)

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.no_grad():
        previous = math.nan if convex else float(objective())  # the stall of another head is measured from here
    done, history, converged = 0, [], False
    while done < steps and not converged:
        chunk = min(check_every, steps - done)
        optimizer.param_groups[0].update(max_iter=chunk, max_eval=2 * chunk)
        optimizer.step(closure)
        done += chunk
        if convex:
            result = certify(module, tokens, targets, beta, rank_tol=rank_tol)
            history.append((done, result.objective, result.duality_gap))
            residual, tol = result.relative_gap, gap_tol
        else:
            with torch.no_grad():
                current = float(objective())
            history.append((done, current, math.nan))
            residual = (previous - current) / max(abs(current), _TINY) / chunk
            tol, previous = stall_tol, current
        converged = residual <= tol
    if not converged:
        warn_unconverged(head, done, residual, tol, module, result.rank if convex else None)
    if convex:
        return FitResult(result.objective, result.data_loss, result.regulariser, result.duality_gap, result.rank,
                         module, converged, done, residual, tuple(history))
    with torch.no_grad():
        data_loss, regulariser = float(squared_loss(module(tokens), targets)), beta * float(weight_decay(module))
    return FitResult(data_loss + regulariser, data_loss, regulariser, math.nan, -1, module, converged, done, residual,
                     tuple(history))


def warn_unconverged(head: str, steps: int, residual: float, tol: float, module: nn.Module,
                     rank: Optional[int]) -> None:
    """One :class:`ConvergenceWarning` for a fit that ran out of ``steps``, naming what to raise."""
    if rank is None:
        measured = f"its objective still fell by {residual:.3g} per iteration (relative) > stall_tol {tol:g}"
    else:
        measured = f"its duality gap is {residual:.3g} of the objective > gap_tol {tol:g}"
    advice = "raise steps"
    units = units_per_block(module)
    if rank is not None and units is not None and rank >= units:
        advice += (f", or heads: the fit uses all its {units} units per block, fewer than rank(Z*) may need "
                   f"(max_rank {module.max_rank})")
    warnings.warn(f"fit_head({head!r}) stopped at its budget of {steps} L-BFGS iterations before converging: "
                  f"{measured}; {advice}", ConvergenceWarning, stacklevel=3)


def units_per_block(module: nn.Module) -> Optional[int]:
    """m, the units per block of a convex-capable head (None for another head)."""
    if not isinstance(module, ConvexHead):
        return None
    return module.factors()[0].shape[1]
