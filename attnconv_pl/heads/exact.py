"""The exact optimum of a head's convex program by CVXPY (small instances: the reference).

    min_Z (1/2n) sum_i ||y_hat_i(Z) - y_i||^2 + beta sum_b ||Z_b||_*      (cp.normNuc)

with y_hat linear in the blocks Z_b as in :mod:`attnconv_pl.heads.lifted`. Blocks whose
features are complex (FNO's frequencies other than 0 and s/2) are complex variables; the
others are real. The problem holds the explicit lifted features, n p q / c numbers per block,
and the solver's cone grows with (p + q)^2 per block: meant for instances of a few hundred
numbers per block side at most.

cvxpy is an optional dependency (the ``dev`` extra), imported only here, when called.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from ._checks import check_number
from .certificate import RANK_TOL, numerical_rank
from .fit import ConvergenceWarning
from .registry import ConvexHead, create_head

SOLVERS = ("CLARABEL", "SCS")
ITERATION_LIMITS = {"CLARABEL": "max_iter", "SCS": "max_iters"}
"""Each solver's option for its iteration limit (through ``solver_options``)."""
OPTIMAL = "optimal"
INACCURATE = "optimal_inaccurate"
"""The statuses with a solution: CVXPY's ``optimal`` (the solver's tolerances met) and
``optimal_inaccurate`` (it stopped at its iteration limit or lost accuracy: a marked result)."""


@dataclass(frozen=True)
class ConvexSolution:
    """The optimum of a convex program.

    Attributes:
        objective: the optimal value p* as the solver reports it.
        Z: (P, p, q) float64 (complex128 for FNO) optimal blocks.
        rank: max_b rank(Z_b), singular values above ``rank_tol``.
        status: CVXPY's status: ``"optimal"``, or ``"optimal_inaccurate"`` when the solver
            stopped before its tolerances held (then ``converged`` is False).
        solver: the solver's name.
        iterations: the solver's iterations (None when it does not say).
    """

    objective: float
    Z: Tensor
    rank: int
    status: str
    solver: str
    iterations: Optional[int] = None

    @property
    def converged(self) -> bool:
        """Whether the solver met its own tolerances (status ``"optimal"``)."""
        return self.status == OPTIMAL


def import_cvxpy() -> Any:
    """The cvxpy module, or an ImportError that says how to install it."""
    try:
        import cvxpy
    except ImportError as error:
        raise ImportError('solve_convex needs cvxpy, an optional dependency: pip install -e ".[dev]" '
                          "(or pip install cvxpy)") from error
    return cvxpy


def solve_convex(head: str, tokens: Tensor, targets: Tensor, beta: float, *, solver: str = "CLARABEL",
                 rank_tol: float = RANK_TOL, solver_options: Optional[dict[str, Any]] = None,
                 **head_options: Any) -> ConvexSolution:
    """Solve the convex program of head ``head`` exactly.

    Args:
        head: a convex-capable head (``linear_attention``, ``gated_relu_attention``, ``mixer``, ``fno``).
        tokens: (n, s, d) inputs.
        targets: (n, c) targets (one-hot for classification).
        beta: weight of the nuclear norms, the same beta as the head's weight decay (beta/2).
        solver: ``"CLARABEL"`` (interior point, default) or ``"SCS"``.
        rank_tol: absolute tolerance of the rank on the singular values.
        solver_options: keyword arguments of the solver (CVXPY's ``problem.solve``), e.g.
            ``{"max_iter": 1000}``.
        **head_options: options fixing the head's lifting (``gates``, ``gate_seed``); ``heads``
            is irrelevant here.

    The solver's status is checked: ``"optimal"`` is returned as it is; ``"optimal_inaccurate"``
    (the solver stopped at its iteration limit or lost accuracy) is returned with
    ``converged`` False and one :class:`~attnconv_pl.heads.fit.ConvergenceWarning` naming
    what to change; any other status raises.

    Raises:
        ImportError: cvxpy is not installed.
        ValueError: unknown solver, a bad ``beta``, a head without convex form, or the solver
            failed or found no solution (its status in the message).
    """
    cp = import_cvxpy()
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    beta = check_number("beta", beta, meaning="the weight of the nuclear norms")
    n, s, d = tokens.shape
    c = targets.shape[1]
    module = create_head(head, d, c, s, **{"heads": 1, **head_options}).double()
    if not isinstance(module, ConvexHead):
        raise ValueError(f"head {head!r} has no convex form; solve_convex takes linear_attention, "
                         "gated_relu_attention, mixer or fno")
    lifting = module.lifting(tokens.detach().double().cpu())
    features = lifting.dense_features().numpy()
    p, q = lifting.block_shape
    real_blocks = lifting.real_blocks()
    blocks = [cp.Variable((p, q), complex=not real) for real in real_blocks]
    prediction = sum(_block_prediction(cp, features[:, b].reshape(n, -1), Z, c, real)
                     for b, (Z, real) in enumerate(zip(blocks, real_blocks)))
    targets_np = targets.detach().double().cpu().numpy()
    objective = cp.sum_squares(prediction - targets_np) / (2 * n) + beta * sum(cp.normNuc(Z) for Z in blocks)
    problem = cp.Problem(cp.Minimize(objective))
    other = "SCS" if solver == "CLARABEL" else "CLARABEL"
    advice = f"raise solver_options['{ITERATION_LIMITS[solver]}'] or try solver={other!r}"
    try:
        with warnings.catch_warnings():  # CVXPY's own "may be inaccurate": ours below says what to do
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            problem.solve(solver=solver, **(solver_options or {}))
    except cp.error.SolverError as error:
        raise ValueError(f"{solver} failed on the convex program of {head!r} ({error}); {advice}") from error
    if problem.status not in (OPTIMAL, INACCURATE) or problem.value is None:
        raise ValueError(f"{solver} found no solution of the convex program of {head!r}: status {problem.status}; "
                         f"{advice}")
    iterations = getattr(problem.solver_stats, "num_iters", None)
    if problem.status == INACCURATE:
        warnings.warn(f"solve_convex({head!r}): {solver} stopped before its tolerances held (status "
                      f"{INACCURATE}, {iterations} iterations); {advice}", ConvergenceWarning, stacklevel=2)
    Z = torch.from_numpy(np.stack([np.asarray(block.value) for block in blocks]))
    return ConvexSolution(float(problem.value), Z, numerical_rank(torch.linalg.svdvals(Z), rank_tol), problem.status,
                          solver, iterations)


def _block_prediction(cp: Any, features: np.ndarray, Z: Any, num_classes: int, real: bool) -> Any:
    """Re features @ Z read as (p q / c, c): the (n, c) predictions of one block."""
    p, q = Z.shape
    rows = cp.reshape(Z, (p * q // num_classes, num_classes), order="C")
    return features.real @ rows if real else cp.real(features @ rows)
