"""A certificate of optimality for convex-capable heads: the duality gap.

The convex program of a head (:mod:`attnconv_pl.heads.lifted`) is

    p* = min_Z (1/2n) ||L(Z) - Y||^2 + beta sum_b ||Z_b||_*,

whose Fenchel dual is

    d* = max_V <V, Y> - (n/2) ||V||^2   subject to  ||L_b^*(V)||_2 <= beta for every block b

(L^* the adjoint, ||.||_2 the spectral norm, the dual norm of the nuclear norm). At the
optimum V* = (Y - L(Z*)) / n. From any head's predictions we take V = (Y - y_hat) / n and
the best feasible multiple t V, 0 <= t <= beta / max_b ||L_b^*(V)||_2 (the dual is a concave
quadratic in t). Weak duality gives d(tV) <= d* = p* <= the convex objective of the head's Z
<= the head's own (non-convex) objective, so

    duality_gap = objective - d(tV) >= 0,

it bounds the head's distance to the global optimum, and it is ~0 at the optimum (where
y_hat = L(Z*) makes tV = V* with t = 1).

Spectral norms are computed matrix-free: an L_b^*(V) of at most ``dense_limit`` entries is
formed (P p q numbers, never the n x p x q lifted data) and its norm taken exactly; a larger
one by power iteration with matrix-vector products through the lifting's factors (a lower
bound converging to the norm; the gap is then exact up to ``power_tol``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .lifted import Lifting, adjoint_matvec, adjoint_rmatvec, block_singular_values, lifted_adjoint
from .objective import squared_loss, weight_decay
from .registry import ConvexHead

RANK_TOL = 1e-5
"""Absolute tolerance of :func:`numerical_rank`: singular values above it count (our choice)."""
DENSE_LIMIT = 2**22
"""Blocks L_b^*(V) with at most this many entries are formed and their norm taken exactly."""
POWER_ITERATIONS = 1000
POWER_TOL = 1e-10
"""Power iteration stops when sigma^2 changes by less than this, relatively, or after
``POWER_ITERATIONS`` steps."""


@dataclass(frozen=True)
class Certificate:
    """The objective of a head on a data set and its duality gap.

    Attributes:
        objective: data_loss + regulariser, the head's (non-convex) training objective.
        data_loss: (1/2n) sum ||y_hat_i - y_i||^2.
        regulariser: (beta/2) sum of squared parameters (of a head), >= beta sum_b ||Z_b||_*.
        dual: the dual value d(tV) <= the optimum of the convex program.
        duality_gap: objective - dual, >= 0.
        rank: max_b rank(Z_b) of the lifted blocks, singular values above the tolerance.
    """

    objective: float
    data_loss: float
    regulariser: float
    dual: float
    duality_gap: float
    rank: int

    @property
    def relative_gap(self) -> float:
        """duality_gap / objective: an upper bound on the head's relative distance to the optimum."""
        return self.duality_gap / self.objective if self.objective > 0 else 0.0

    def metrics(self) -> dict[str, float]:
        """The logged numbers: ``objective``, ``data_loss``, ``regulariser``, ``duality_gap``, ``rank``."""
        values = asdict(self)
        del values["dual"]
        return {name: float(value) for name, value in values.items()}


def numerical_rank(singular_values: Tensor, tol: float = RANK_TOL) -> int:
    """max_b #{singular values of Z_b > tol} from the blocks' ``singular_values`` (P, k)
    (absolute ``tol``)."""
    return int((singular_values > tol).sum(dim=-1).max())


def spectral_norms(lifting: Lifting, V: Tensor, dense_limit: int = DENSE_LIMIT,
                   iterations: int = POWER_ITERATIONS, tol: float = POWER_TOL) -> Tensor:
    """||L_b^*(V)||_2 (P,) for ``V`` (n, c): exact for blocks of at most ``dense_limit`` entries,
    else by power iteration on L^*(V)^H L^*(V) from a fixed seeded start."""
    p, q = lifting.block_shape
    if p * q <= dense_limit:
        return torch.linalg.matrix_norm(lifted_adjoint(lifting, V), ord=2)
    dtype = torch.promote_types(lifting.left.dtype, V.dtype)
    x = torch.randn(lifting.num_blocks, q, generator=torch.Generator().manual_seed(0), dtype=dtype).to(V.device)
    estimate = torch.zeros(lifting.num_blocks, dtype=V.dtype, device=V.device)
    for _ in range(iterations):
        x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(V.dtype).tiny)
        x, previous = adjoint_rmatvec(lifting, V, adjoint_matvec(lifting, V, x)), estimate
        estimate = x.norm(dim=1)  # ||W^H W x|| -> sigma_max^2
        if ((estimate - previous).abs() <= tol * estimate).all():
            break
    x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(V.dtype).tiny)
    return adjoint_matvec(lifting, V, x).norm(dim=1)


def dual_value(lifting: Lifting, predictions: Tensor, targets: Tensor, beta: float, **norm_options) -> float:
    """d(tV) for V = (targets - predictions) / n and the best feasible t (module docstring).

    Args:
        lifting: the lifted data of the n inputs.
        predictions, targets: (n, c).
        beta: the weight of the nuclear norms.
        **norm_options: ``dense_limit``, ``iterations``, ``tol`` of :func:`spectral_norms`.
    """
    n = len(targets)
    V = (targets - predictions) / n
    linear, quadratic = float((V * targets).sum()), 0.5 * n * float(V.pow(2).sum())
    if quadratic == 0.0:
        return 0.0
    largest = float(spectral_norms(lifting, V, **norm_options).max())
    t_max = beta / largest if largest > 0 else math.inf
    t = min(max(linear / (2 * quadratic), 0.0), t_max)
    return t * linear - t * t * quadratic


def certificate(lifting: Lifting, predictions: Tensor, targets: Tensor, beta: float, regulariser: float,
                singular_values: Tensor, *, rank_tol: float = RANK_TOL, **norm_options) -> Certificate:
    """The certificate of predictions (n, c) = L(Z) whose regulariser (already times beta) is
    at least beta sum_b ||Z_b||_*: a head's weight decay, or that sum itself for a solution Z of
    the convex program; ``singular_values`` (P, k) are those of the blocks Z_b (for the rank).
    ``norm_options`` go to :func:`spectral_norms`."""
    data_loss = float(squared_loss(predictions, targets))
    dual = dual_value(lifting, predictions, targets, beta, **norm_options)
    objective = data_loss + regulariser
    return Certificate(objective, data_loss, regulariser, dual, objective - dual,
                       numerical_rank(singular_values, rank_tol))


def certify(head: nn.Module, tokens: Tensor, targets: Tensor, beta: float, *, rank_tol: float = RANK_TOL,
            **norm_options) -> Certificate:
    """The certificate of a convex-capable ``head`` on ``tokens`` (n, s, d) and one-hot
    ``targets`` (n, c), computed in the head's dtype without gradients.

    Raises:
        TypeError: ``head`` has no convex form (it is not a :class:`ConvexHead`).
    """
    if not isinstance(head, ConvexHead):
        raise TypeError(f"{type(head).__name__} has no convex form; the duality gap is defined for the heads "
                        "with a lifting (linear_attention, gated_relu_attention, mixer, fno)")
    dtype = next(head.parameters()).dtype
    tokens, targets = tokens.to(dtype), targets.to(dtype)
    with torch.no_grad():
        return certificate(head.lifting(tokens), head(tokens), targets, beta, beta * float(weight_decay(head)),
                           block_singular_values(*head.factors()), rank_tol=rank_tol, **norm_options)
