"""The multinomial logistic readout of the single-node probe, fitted to a stated tolerance.

Problem (scikit-learn's ``LogisticRegression(C=1 / (n l2))`` on standardised features): the
features z (n, D) are standardised once, z_s = (z - mean) / std (per node, over these inputs; a
constant node keeps std 1), and theta = [W_s | c_s] (K, D + 1) minimises

    f(theta) = mean cross-entropy of softmax(z_s W_s^T + c_s) + (l2 / 2) ||W_s||^2

over the K labels present (the bias is not penalised). f is strictly convex in W_s for l2 > 0
and flat only along c_s + t 1 (adding a constant to every bias changes no probability); the
solution is taken with sum(c_s) = 0, so it is unique.

Method: Newton's method with the exact Hessian in float64 from theta = 0, with an Armijo
backtracking line search. Each Newton system is solved exactly by a Cholesky factorisation of the
Hessian over the free coefficients when there are at most ``DENSE_LIMIT`` of them (the masked
refits), else by conjugate gradients on exact Hessian-vector products (the full readout: a
truncated Newton method, the system solved to a relative residual min(0.5, sqrt(r)) r, never
below tol / 4, so the convergence is superlinear), preconditioned by a Kronecker approximation
of the Hessian (:meth:`_Objective.preconditioner`). It stops when the relative gradient norm
r = ||grad f(theta)|| / ||grad f(0)|| is <= ``tol`` (1e-10: on the features of a cct_2_3x1_16
trained 20 epochs the weights are then within 1e-9, relative, of scikit-learn's optimum), or
after ``max_iter`` Newton iterations, or when the line search finds no decrease (then
:attr:`Readout.converged` is False). About 10 Newton iterations are needed on trained features.

A mask holds chosen weights at 0: the method then works in the subspace of the free weights.
Every fit starts from zero: starting a masked refit from the full readout restricted to its mask
took as many or more iterations there (the restricted weights are far from the refit's optimum,
and the first Newton steps overshoot from them).

Everything that depends only on the features and labels (standardisation, the one-hot targets,
||grad f(0)||) is a :class:`ReadoutProblem`, computed once per sub-block and shared by its
readout, its ANDC refit and its random-mask controls.
Deterministic: no randomness, a fixed start, fixed operation order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ._checks import as_points

TOL = 1e-10
"""Default stopping tolerance on the relative gradient norm ||grad f|| / ||grad f(0)||."""
MAX_ITER = 100
"""Default budget of Newton iterations (about 10 are needed on trained features)."""
DENSE_LIMIT = 400
"""Most free coefficients for which a Newton step factorises the exact Hessian (a masked refit);
above it (a full readout) the step is conjugate gradients on Hessian-vector products."""
ARMIJO = 1e-4
"""Sufficient decrease of the line search: f(theta + t s) <= f(theta) + ARMIJO t grad f . s; a step
whose change of f is within rounding is taken when it lowers the gradient norm (near the optimum
f no longer resolves the decrease)."""
MIN_STEP = 1e-10
"""The line search halves t from 1 down to this; below it the fit stops (marked unconverged)."""


def as_labels(labels: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    """Check that ``labels`` is an integer (n,) tensor with values in [0, num_classes); return it."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != n:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels: got {shape}, expected an integer tensor of shape ({n},), one label per input")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"labels: got dtype {labels.dtype}, expected integer labels; convert with .long()")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels: values span [{int(labels.min())}, {int(labels.max())}], expected [0, {num_classes}) "
            f"for num_classes={num_classes}"
        )
    return labels.long()


@dataclass(frozen=True)
class ReadoutProblem:
    """What every readout of one set of features and labels shares (:func:`readout_problem`).

    Attributes:
        design: (n, D + 1) float64 [z_s, 1], the standardised features and a constant for the bias.
        design_t: (D + 1, n) its transpose, contiguous (the exact Hessian gathers its rows).
        mean, std: (D,) float64, the standardisation (std 1 for a constant node).
        targets: (n, K) float64 one-hot targets over the present labels.
        classes: (K,) the present labels, increasing.
        num_classes: L, the labels a readout has rows for (K <= L).
        start_gradient: ||grad f(0)||, the scale of the stopping test (independent of l2).
        dtype: the dtype of the features, that of the returned readouts.
    """

    design: torch.Tensor
    design_t: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    targets: torch.Tensor
    classes: torch.Tensor
    num_classes: int
    start_gradient: float
    dtype: torch.dtype

    @property
    def width(self) -> int:
        """D, the number of nodes."""
        return self.design.shape[1] - 1


def readout_problem(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> ReadoutProblem:
    """Standardise ``features`` (n, D) with their ``labels`` (n,) in [0, num_classes) once, for
    :func:`solve_readout`."""
    raw = as_points(features, "features")
    labels = as_labels(labels, raw.shape[0], num_classes)
    z = raw.double()
    mean = z.mean(0)
    std = z.std(0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    design = torch.cat([(z - mean) / std, z.new_ones(len(z), 1)], 1)
    present = torch.bincount(labels, minlength=num_classes) > 0
    classes = present.nonzero().squeeze(1)
    targets = torch.zeros(len(z), len(classes), dtype=z.dtype, device=z.device)
    targets[torch.arange(len(z), device=z.device), torch.cumsum(present.long(), 0)[labels] - 1] = 1
    start = targets.new_full((len(z), len(classes)), 1 / len(classes)) - targets
    return ReadoutProblem(design=design, design_t=design.T.contiguous(), mean=mean, std=std, targets=targets,
                          classes=classes, num_classes=num_classes,
                          start_gradient=float((start.T @ design).norm() / len(z)), dtype=raw.dtype)


@dataclass(frozen=True)
class Readout:
    """A fitted readout and how its fit stopped.

    Attributes:
        weight: (L, D) W, applying to raw features: logits = features @ W.T + bias; rows of
            absent labels are 0.
        bias: (L,) c; -inf for absent labels (never predicted).
        iterations: Newton iterations taken.
        gradient_norm: the final relative gradient norm ||grad f|| / ||grad f(0)||.
        converged: whether ``gradient_norm <= tol`` (False: the budget ``max_iter`` ran out first).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    gradient_norm: float
    converged: bool


class _Objective:
    """f, its gradient and Hessian-vector products over the free coefficients of one problem."""

    def __init__(self, problem: ReadoutProblem, l2: float, free: torch.Tensor) -> None:
        self.problem, self.l2, self.free = problem, l2, free
        self.penalised = torch.ones_like(free[0]).index_fill_(0, torch.tensor(problem.width, device=free.device), 0)

    def value_gradient(self, theta: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """f(theta), its gradient on the free coefficients (K, D + 1) and the probabilities (n, K)."""
        design, targets = self.problem.design, self.problem.targets
        log_p = (design @ theta.T).log_softmax(1)
        penalty = self.l2 * theta * self.penalised
        value = float(-(log_p * targets).sum() / len(design) + 0.5 * (penalty * theta).sum())
        probabilities = log_p.exp()
        gradient = ((probabilities - targets).T @ design / len(design) + penalty) * self.free
        return value, gradient, probabilities

    def hessian_product(self, probabilities: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """H v on the free coefficients: the Hessian of f at ``probabilities`` times v (K, D + 1)."""
        design = self.problem.design
        u = design @ v.T
        r = probabilities * (u - (probabilities * u).sum(1, keepdim=True))
        return (r.T @ design / len(design) + self.l2 * v * self.penalised) * self.free

    def dense_step(self, probabilities: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The Newton step -H^-1 gradient by a Cholesky factorisation of the exact Hessian over
        the free coefficients (1 1^T / K added on the biases: f is flat along equal biases, the
        gradient orthogonal to them, so the step is unchanged and has biases summing to 0)."""
        design, count = self.problem.design, probabilities.shape[1]
        label, node = self.free.nonzero(as_tuple=True)  # grouped by label
        rows = self.problem.design_t[node]
        weighted = probabilities.T.contiguous()[label] * rows
        ends = torch.searchsorted(label, torch.arange(count + 1, device=label.device)).tolist()
        own = [weighted[a:b] @ rows[a:b].T for a, b in zip(ends[:-1], ends[1:])]
        hessian = (torch.block_diag(*own) - weighted @ weighted.T) / len(design)
        hessian += torch.diag(self.l2 * self.penalised[node])
        is_bias = (node == self.problem.width).to(design.dtype)
        hessian += is_bias[:, None] * is_bias[None, :] / count
        step = torch.zeros_like(gradient)
        step[label, node] = -torch.cholesky_solve(gradient[label, node][:, None],
                                                  torch.linalg.cholesky(hessian))[:, 0]
        return step

    def preconditioner(self, probabilities: torch.Tensor):
        """v -> M^-1 v on the free coefficients, M = A (x) G + l2 I: A the mean over the inputs of
        diag(p) - p p^T (its null direction 1, the bias gauge, given the mean eigenvalue), G the
        Gram matrix of [z_s, 1] weighted by each input's 1 - |p|^2 (so tr M = tr H up to the penalty); diagonal in the
        two eigenbases."""
        design = self.problem.design
        count = probabilities.shape[1]
        curvature = (torch.diag(probabilities.sum(0)) - probabilities.T @ probabilities) / len(design)
        curvature += curvature.trace() / count ** 2 * torch.ones_like(curvature)
        label_values, label_vectors = torch.linalg.eigh(curvature)
        weights = 1 - probabilities.square().sum(1)
        gram = (design * weights[:, None]).T @ design / weights.sum().clamp_min(torch.finfo(design.dtype).tiny)
        node_values, node_vectors = torch.linalg.eigh(gram)
        scale = label_values.clamp_min(0)[:, None] * node_values.clamp_min(0)[None, :] + max(self.l2, 1e-12)

        def apply(v: torch.Tensor) -> torch.Tensor:
            rotated = label_vectors.T @ v @ node_vectors / scale
            return (label_vectors @ rotated @ node_vectors.T) * self.free

        return apply


def _conjugate_gradient(product, precondition, gradient: torch.Tensor, tolerance: float, steps: int) -> torch.Tensor:
    """Preconditioned CG for H s = -gradient from s = 0, until ||H s + gradient|| <= tolerance or
    ``steps`` iterations (at most the number of free coefficients: exact in exact arithmetic)."""
    step = torch.zeros_like(gradient)
    residual = -gradient
    direction = precondition(residual)
    rho = float((residual * direction).sum())
    for _ in range(steps):
        curved = product(direction)
        alpha = rho / float((direction * curved).sum())
        step += alpha * direction
        residual -= alpha * curved
        if float(residual.norm()) <= tolerance:
            break
        preconditioned = precondition(residual)
        rho, previous = float((residual * preconditioned).sum()), rho
        direction = preconditioned + rho / previous * direction
    return step


def solve_readout(
    problem: ReadoutProblem,
    *,
    l2: float = 1e-3,
    tol: float = TOL,
    max_iter: int = MAX_ITER,
    mask: Optional[torch.Tensor] = None,
) -> Readout:
    """Fit the readout of ``problem`` (see the module docstring for the objective and the method).

    Args:
        problem: the standardised features and labels (:func:`readout_problem`).
        l2: penalty on the standardised weights, > 0.
        tol: stop when the relative gradient norm is <= tol, > 0.
        max_iter: Newton iterations at most, >= 1.
        mask: optional (L, D) bool; weights where it is False are held at 0.

    Returns:
        :class:`Readout`, in the dtype and on the device of the features.
    """
    if not l2 > 0 or not tol > 0 or max_iter < 1:
        raise ValueError(f"l2={l2}, tol={tol}, max_iter={max_iter}: expected l2 > 0 (without a penalty separable "
                         "features have no optimum), tol > 0 and max_iter >= 1")
    design, classes, width = problem.design, problem.classes, problem.width
    shape = (len(classes), width + 1)
    if mask is not None and (mask.shape != (problem.num_classes, width) or mask.dtype != torch.bool):
        raise ValueError(f"mask: got {mask.dtype} {tuple(mask.shape)}, expected bool ({problem.num_classes}, {width})")
    free = design.new_ones(shape)
    if mask is not None:
        free[:, :width] = mask.to(design.device)[classes].to(design.dtype)
    objective = _Objective(problem, l2, free)
    theta = design.new_zeros(shape)
    value, gradient, probabilities = objective.value_gradient(theta)
    scale = problem.start_gradient
    relative = float(gradient.norm()) / scale if scale > 0 else 0.0
    dense = free.sum() <= DENSE_LIMIT
    iterations = 0
    while relative > tol and iterations < max_iter:
        iterations += 1
        if dense:
            step = objective.dense_step(probabilities, gradient)
        else:
            step = _conjugate_gradient(lambda v: objective.hessian_product(probabilities, v),  # noqa: B023 (called at once)
                                       objective.preconditioner(probabilities), gradient,
                                       max(min(0.5, relative ** 0.5) * relative, tol / 4) * scale, int(free.sum()))
        step[:, width] -= step[:, width].mean()
        slope, length = float((gradient * step).sum()), 1.0
        while length >= MIN_STEP:
            trial = theta + length * step
            trial_value, trial_gradient, trial_probabilities = objective.value_gradient(trial)
            within_rounding = abs(trial_value - value) <= 16 * torch.finfo(design.dtype).eps * abs(value)
            if trial_value <= value + ARMIJO * length * slope or (
                    within_rounding and trial_gradient.norm() < gradient.norm()):
                break
            length /= 2
        else:
            break  # no decrease left to find: stop, marked unconverged when above tol
        theta, value, gradient, probabilities = trial, trial_value, trial_gradient, trial_probabilities
        relative = float(gradient.norm()) / scale
    fitted = theta[:, :width] / problem.std
    weight = design.new_zeros(problem.num_classes, width).index_copy_(0, classes, fitted)
    bias = design.new_full((problem.num_classes,), float("-inf")).index_copy_(0, classes,
                                                                               theta[:, width] - fitted @ problem.mean)
    return Readout(weight=weight.to(problem.dtype), bias=bias.to(problem.dtype),
                   iterations=iterations, gradient_norm=relative, converged=relative <= tol)
