"""Convex attention heads (arXiv 2205.08078) on frozen token features.

Heads map tokens (B, s, d) to logits (B, c) and are built by name (:func:`create_head`,
:func:`list_heads`): baselines ``linear``, ``mlp``, ``attention`` and the convex-capable
``linear_attention``, ``gated_relu_attention``, ``mixer``, ``fno``, whose lifted forms
(:mod:`.lifted`) turn their weight-decayed training into a convex program with a block nuclear
norm. :func:`solve_convex` solves that program exactly (CVXPY), :func:`fit_head` fits a head
by L-BFGS until a stated criterion holds, :func:`certify` bounds its distance to the optimum by a duality gap, and
:class:`HeadModule` trains a head with ``train.py``.
"""

from . import modules
from .certificate import RANK_TOL, Certificate, certificate, certify, dual_value, numerical_rank, spectral_norms
from .exact import ConvexSolution, solve_convex
from .fit import ConvergenceWarning, FitResult, fit_head
from .lifted import (
                     Lifting,
                     adjoint_matvec,
                     adjoint_rmatvec,
                     attention_lifting,
                     block_singular_values,
                     fno_lifting,
                     gate_directions,
                     lifted_adjoint,
                     lifted_blocks,
                     lifted_predict,
                     mixer_lifting,
)
from .module import HeadModule
from .objective import one_hot, squared_loss, weight_decay
from .registry import ConvexHead, create_head, list_heads, register_head

__all__ = [
    "RANK_TOL",
    "Certificate",
    "ConvergenceWarning",
    "ConvexHead",
    "ConvexSolution",
    "FitResult",
    "HeadModule",
    "Lifting",
    "adjoint_matvec",
    "adjoint_rmatvec",
    "attention_lifting",
    "block_singular_values",
    "certificate",
    "certify",
    "create_head",
    "dual_value",
    "fit_head",
    "fno_lifting",
    "gate_directions",
    "lifted_adjoint",
    "lifted_blocks",
    "lifted_predict",
    "list_heads",
    "mixer_lifting",
    "modules",
    "numerical_rank",
    "one_hot",
    "register_head",
    "solve_convex",
    "spectral_norms",
    "squared_loss",
    "weight_decay",
]
