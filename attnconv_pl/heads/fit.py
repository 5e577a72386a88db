"""Fit a head by full-batch L-BFGS in float64: the Burer-Monteiro solver of its convex program.

The non-convex objective (1/2n) sum ||y_hat_i - y_i||^2 + (beta/2) sum ||theta||^2 of a
convex-capable head with m >= rank(Z*) units per block has the optimum of the convex program
(:mod:`attnconv_pl.heads.lifted`); its default m is the largest possible rank, min(p, q).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Iterable
from typing import Any, Optional

import torch
from torch import Tensor, nn

from .certificate import RANK_TOL, certify
from .objective import squared_loss, weight_decay
from .registry import ConvexHead, create_head, head_options

DEFAULT_STEPS = 5000
"""Most L-BFGS iterations of :func:`fit_head` (our choice)."""
DEFAULT_GAP_TOL = 1e-3
"""Relative duality gap at which :func:`fit_head` stops (our choice): the objective is then
within 0.1% of the global optimum, in practice much closer (the gap is first order in the
distance of the predictions to the optimal ones, the objective second order)."""
CHECK_EVERY = 100
"""L-BFGS iterations between two checks of the duality gap."""


@dataclass(frozen=True)
class FitResult:
    """A fitted head and its objective.

    Attributes:
        objective, data_loss, regulariser: the training objective and its two terms.
        duality_gap: objective minus a dual value (>= 0; see :mod:`.certificate`); NaN for a
            head without convex form.
        rank: max_b rank(Z_b) of the lifted blocks (-1 without convex form).
        head: the fitted module (float64, on the tokens' device).
        history: ``(iterations, objective, duality_gap)`` at every check of a convex-capable
            head (every ``check_every`` L-BFGS iterations); empty for other heads.
    """

    objective: float
    data_loss: float
    regulariser: float
    duality_gap: float
    rank: int
    head: nn.Module
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
             steps: int = DEFAULT_STEPS, gap_tol: float = DEFAULT_GAP_TOL, seed: int = 0, rank_tol: float = RANK_TOL,
             check_every: int = CHECK_EVERY, **options: Any) -> FitResult:
    """Minimise the head's objective on ``tokens`` (n, s, d) and ``targets`` (n, c) by L-BFGS
    (strong Wolfe line search, float64, full batch).

    A convex-capable head stops once its duality gap is at most ``gap_tol`` times its objective
    (checked every ``check_every`` iterations; then the objective is within that relative
    distance of the global optimum), else after ``steps`` iterations; other heads run ``steps``
    (L-BFGS may stop earlier when its own tolerances are met).
    Deterministic for a ``seed`` (the initialisation; gates have their own ``gate_seed``).

    Args:
        head: a registered head name.
        beta: weight-decay strength; the regulariser is (beta/2) sum ||theta||^2.
        heads: units per block (m); None: ``max_rank`` for convex-capable heads (reaches the
            convex optimum), else the head's default.
        rank_tol: absolute tolerance of the reported rank.
        check_every: L-BFGS iterations between two certificates (each one a point of ``history``).
        **options: the head's other options (``gates``, ``gate_seed``, ``hidden``).
    """
    if steps < 1 or check_every < 1:
        raise ValueError(f"steps and check_every must be >= 1 L-BFGS iterations, got {steps} and {check_every}")
    _, s, d = tokens.shape
    module = build_head(head, d, targets.shape[1], s, heads, seed, **options).to(tokens.device)
    tokens, targets = tokens.double(), targets.double()
    optimizer = lbfgs(module.parameters())

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = squared_loss(module(tokens), targets) + beta * weight_decay(module)
        loss.backward()
        return loss

    done, history = 0, []
    while done < steps:
        chunk = min(check_every, steps - done)
        optimizer.param_groups[0].update(max_iter=chunk, max_eval=2 * chunk)
        optimizer.step(closure)
        done += chunk
        if isinstance(module, ConvexHead):
            result = certify(module, tokens, targets, beta, rank_tol=rank_tol)
            history.append((done, result.objective, result.duality_gap))
            if result.relative_gap <= gap_tol:
                break
    if isinstance(module, ConvexHead):
        return FitResult(result.objective, result.data_loss, result.regulariser, result.duality_gap, result.rank,
                         module, tuple(history))
    with torch.no_grad():
        data_loss, regulariser = float(squared_loss(module(tokens), targets)), beta * float(weight_decay(module))
    return FitResult(data_loss + regulariser, data_loss, regulariser, math.nan, -1, module)
