"""Stiffness of residual blocks read as forward-Euler steps (arXiv 2308.09939).

A residual block x_{t+1} = x_t + a_t * f_t(x_t) is a forward-Euler step of dx/dt = f(x) with
step size a_t (1 without attention, a per-channel gate with it). A step is stiff when its
components move at very different rates; channel attention can then act as an adaptive
per-channel step size. The definitions below are our choices (fixed by the issue), not the
paper's code:

- **Channel rate** r_c = ||f(x)_c|| / ||x_c||: Euclidean norms of channel c over all inputs
  and positions, the (n, H, W) slice of (n, C, H, W) activations; dimensionless. A dead
  channel (||x_c|| = 0) has rate NaN and is left out of every summary below.
- **Feature stiffness index**: max_c r_c / min_c r_c over live channels; the **quantile index**
  q_high / q_low of the live rates (``torch.quantile``, linear interpolation, numpy's default).
  A zero denominator with a positive numerator gives inf; NaN with a
  :class:`DegenerateInputWarning` when no channel is live or every live rate is 0 (no dynamics).
- **Jacobian stiffness index**: for each input x_i (a batch of one), J_i = df/dx at x_i; the
  index is the mean over inputs of sigma_max(J_i) / sigma_min(J_i), where sigma_min is the
  smallest *nonzero* singular value (J restricted to its row space, the convention of the
  pseudo-inverse: ||J^+||_2 = 1 / sigma_min). Why nonzero: a ReLU inside f zeroes the rows of
  inactive units, so J is rank-deficient in general (a basic block's branch keeps about half of
  its hidden units: rank ~ d / 2) and the smallest singular value over all directions is 0 in
  every block. When f has fewer outputs than inputs, J^T J is singular for the same reason and
  the same rule applies: its nonzero singular values are the min(d_in, d_out) of J J^T.
- **Gate-rate correlation**: Spearman's rho across channels between the mean gate a_c (mean
  over inputs) and r_c; ties get average ranks (as ``scipy.stats.spearmanr``).

How the singular values are computed: Golub-Kahan-Lanczos bidiagonalisation of J with full
reorthogonalisation, from vector-Jacobian products (``torch.func.vjp``) and Jacobian-vector
products (the VJP of the linear map u -> J^T u, as exact as ``torch.func.jvp`` and cheaper); J
is never materialised. f acts on each input separately, so its Jacobian at a batch is block
diagonal, diag(J_1, ..., J_n): one JVP (VJP) at the batch applies every J_i (J_i^T) to its own
vector, and the inputs run their recurrences in lockstep, each with its own coefficients,
stopping test and stop (the values equal those of one input at a time, up to rounding in the
batched products). The first right vector is J^T u for a seeded random u, so the Krylov space
lies in the row space of J and its Ritz values approximate the nonzero singular values. This
replaces power iteration on J^T J and on (sigma_max^2 I - J^T J): one run gives both extremes,
convergence to the smallest is far faster when the small singular values cluster (where the
shifted power iteration stalls, its rate being a ratio of neighbouring eigenvalues), working on
J rather than J^T J does not square the condition number in the rounding errors, and the shifted
power iteration would converge to J's null space (sigma = 0), which the bidiagonalisation leaves
out. Numerical rank: singular values below sqrt(eps) * sigma_max (3.5e-4 in float32, 1.5e-8 in
float64) count as zero, so float32 measures indices up to ~3e3; pass float64 inputs and module
for stiffer branches. Ritz values lie inside the spectrum: without rounding, the estimated
sigma_max is never above the true one and the estimated sigma_min never below. With rounding, a
Ritz value falling from J's null space towards 0 (see ``_lanczos``) can be the smallest one above
the numerical-rank floor when ``max_iter`` stops the run, so an unconverged sigma_min can also be
too low: after 200 steps on ResNet-20 at 16 px (float32, 1,024 to 4,096 dimensions; digits,
trained 10 epochs) it was between 0.013x and 1.03x its converged value, which 500 steps reached
in every block (``bench/solver_budgets.py lanczos``). An unconverged index is no bound: read the
``converged`` flags.

Measured on ResNet-20 branches (BN statistics from random images, float32): the estimates
agree with ``torch.linalg.svdvals`` of the exact Jacobian to 1e-6 at 8 px (1,024 dimensions,
rank ~550, sigma_max / sigma_min ~ 20). The stopping test (residual bound <= tol) passed
within 400, 600 and 1000 steps at 8, 16 and 32 px (1,024 to 16,384 dimensions); the bound is
conservative: at 32 px sigma_min after 300 steps was within 1e-7 of its final value, while
100 steps left it 1 % high at 8 px.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from ._checks import warn_degenerate
from ._lanczos import BlockJacobian, bidiagonal_extremes

Branch = Callable[[torch.Tensor], torch.Tensor]
"""A residual branch f: a batch (b, ...) to a batch (b, ...), acting on each input separately."""


def channel_rates(x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """Per-channel rates r_c = ||fx_c|| / ||x_c||, norms over inputs and positions.

    Args:
        x: (n, C, ...) the states x_t (a block's input, or its shortcut's output).
        fx: (n, C, ...) the updates f_t(x_t) for the same inputs, the shape of ``x``.

    Returns:
        (C,) float64 rates on the inputs' device, dimensionless; NaN for dead channels
        (||x_c|| = 0).

    Raises:
        ValueError: shapes differ, fewer than 2 dimensions, not floating or not finite.
    """
    x, fx = _as_channel_pair(x, fx)
    dims = (0, *range(2, x.ndim))
    state = torch.linalg.vector_norm(x, dim=dims, dtype=torch.float64)
    update = torch.linalg.vector_norm(fx, dim=dims, dtype=torch.float64)
    return torch.where(state > 0, update / state, math.nan)


def rate_mean(x: torch.Tensor, fx: torch.Tensor) -> float:
    """Mean of the live channels' rates (see :func:`channel_rates`); shapes (n, C, ...) each.

    Returns NaN with a :class:`DegenerateInputWarning` when every channel is dead.
    """
    live = _live_rates(channel_rates(x, fx), "rate_mean")
    return math.nan if live is None else float(live.mean())


def feature_stiffness(x: torch.Tensor, fx: torch.Tensor) -> float:
    """max_c r_c / min_c r_c over live channels; x, fx: (n, C, ...) each. Dimensionless, >= 1.

    inf when some live rate is 0 and another is not; NaN with a :class:`DegenerateInputWarning`
    when no channel is live or every rate is 0.
    """
    return _rate_ratio(channel_rates(x, fx), 0.0, 1.0, "feature_stiffness")


def feature_stiffness_quantile(x: torch.Tensor, fx: torch.Tensor, low: float = 0.05, high: float = 0.95) -> float:
    """q_high / q_low of the live channels' rates, a stiffness index robust to outlying channels.

    Quantiles by ``torch.quantile`` with linear interpolation (numpy's default); low=0, high=1
    give :func:`feature_stiffness`. Same zero and NaN rules as :func:`feature_stiffness`.

    Args:
        x, fx: (n, C, ...) states and updates, as for :func:`channel_rates`.
        low, high: quantile levels, 0 <= low < high <= 1.

    Raises:
        ValueError: the levels are not 0 <= low < high <= 1, or the tensors are malformed.
    """
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"quantile levels: got low={low}, high={high}, expected 0 <= low < high <= 1")
    return _rate_ratio(channel_rates(x, fx), low, high, "feature_stiffness_quantile")


class SingularExtremes(NamedTuple):
    """What :func:`jacobian_singular_extremes` returns: three (n,) CPU tensors, one entry per input."""

    sigma_max: torch.Tensor
    """float64, the largest singular value; 0 where J = 0."""
    sigma_min: torch.Tensor
    """float64, the smallest nonzero singular value; NaN where J = 0."""
    converged: torch.Tensor
    """bool, whether the input stopped on the tolerance, an invariant subspace or J = 0 (False:
    ``max_iter`` stopped it first, and the two values bound the truth from inside)."""


def jacobian_singular_extremes(
    f: Branch, x: torch.Tensor, max_iter: int = 500, tol: float = 1e-4, seed: int = 0, chunk: int = 8
) -> SingularExtremes:
    """Largest and smallest nonzero singular values of df/dx at each input, matrix-free.

    Golub-Kahan-Lanczos bidiagonalisation per input (module docstring), ``chunk`` inputs in
    lockstep: one JVP and one VJP of f at the chunk per step, each input stopped when its Ritz
    residuals bound the relative error of both extremes by ``tol``, at an invariant subspace
    (exact), or after ``max_iter`` steps (with a RuntimeWarning naming how many inputs did not
    converge); a stopped input leaves the batch. Memory: ``max_iter`` vectors of each of the
    input and output sizes per input of a chunk (0.26 GB per input in float32 for ResNet-164's
    first stage at 32 px, 64 x 32 x 32: 2.1 GB for a chunk of 8).

    Args:
        f: the branch, called on batches of up to ``chunk`` inputs, ``f(x[i:i+chunk])``. An
            ``nn.Module`` must be in eval mode (BN in eval is the affine map we differentiate);
            its parameters are detached, so no gradient reaches them. Computed in ``x``'s dtype
            and device.
        x: (n, ...) inputs of f, e.g. (n, C, H, W).
        max_iter: most bidiagonalisation steps per input (each one JVP and one VJP). 500: on
            the residual branches we measured (module docstring) sigma_min is settled to 1e-6
            by 300-400 steps though the residual bound may ask for more; sigma_max converges
            in tens of steps; on small problems the Krylov space is exhausted first and the
            values are exact.
        tol: relative error bound on each extreme at which to stop; 1e-4 sits well below the
            1e-3 our checks ask for. The bound holds for the singular value nearest the Ritz
            value: a smaller one the Krylov space has not reached yet goes undetected.
        seed: seeds the CPU generator of the random start vectors, one per input in order.
        chunk: most inputs run together; it trades memory (above) for fewer, larger JVPs and
            VJPs, and does not change the values beyond rounding.

    Returns:
        (sigma_max, sigma_min, converged) (:class:`SingularExtremes`): (n,) CPU tensors, the
        values float64 in f's output units per input unit, sigma_max = 0 and sigma_min = NaN
        for an input where J = 0; ``converged`` False for the inputs ``max_iter`` stopped (the
        warning counts them).

    Raises:
        ValueError: ``x`` is malformed, ``max_iter`` < 1, ``tol`` <= 0, ``chunk`` < 1, or f is
            a module in training mode.
    """
    x = _as_inputs(x)
    if max_iter < 1 or not tol > 0 or chunk < 1:
        raise ValueError(
            f"max_iter={max_iter}, tol={tol}, chunk={chunk}: expected max_iter >= 1, tol > 0 and chunk >= 1"
        )
    branch = _pure(f)
    generator = torch.Generator().manual_seed(seed)
    parts = []
    with torch.no_grad():
        for points in x.split(chunk):
            jacobian = BlockJacobian(branch, points)
            start = torch.stack(
                [torch.randn(jacobian.output.shape[1:], generator=generator, dtype=torch.float64) for _ in points]
            )
            parts.append(bidiagonal_extremes(jacobian, start.to(jacobian.output).flatten(1), max_iter, tol))
    result = SingularExtremes(*(torch.cat(part) for part in zip(*parts)))
    unconverged = int((~result.converged).sum())
    if unconverged:
        warnings.warn(
            f"jacobian_singular_extremes: {unconverged} of {x.shape[0]} inputs did not reach tol={tol} in "
            f"max_iter={max_iter} steps; their sigma_max may be too low and sigma_min off either way. "
            "Raise max_iter.",
            RuntimeWarning,
            stacklevel=2,
        )
    return result


def mean_singular_ratio(sigma_max: torch.Tensor, sigma_min: torch.Tensor) -> float:
    """Mean over inputs of sigma_max / sigma_min, the Jacobian stiffness index; dimensionless, >= 1.

    Args:
        sigma_max, sigma_min: (n,) per input, as :func:`jacobian_singular_extremes` returns.

    Returns:
        The mean ratio over inputs with sigma_min defined (J != 0); NaN with a
        :class:`DegenerateInputWarning` when there is none.
    """
    defined = ~torch.isnan(sigma_min)
    if not defined.any():
        warn_degenerate("mean_singular_ratio: the Jacobian is 0 at every input; returning NaN")
        return math.nan
    return float((sigma_max[defined] / sigma_min[defined]).mean())


def jacobian_stiffness(
    f: Branch, x: torch.Tensor, max_iter: int = 500, tol: float = 1e-4, seed: int = 0, chunk: int = 8
) -> float:
    """Mean over inputs of sigma_max(J_i) / sigma_min(J_i), J_i = df/dx at x_i (module docstring).

    Arguments as :func:`jacobian_singular_extremes`. For the mean sigma_max as well, call that
    function once and pass its result to :func:`mean_singular_ratio`.
    """
    extremes = jacobian_singular_extremes(f, x, max_iter=max_iter, tol=tol, seed=seed, chunk=chunk)
    return mean_singular_ratio(extremes.sigma_max, extremes.sigma_min)


def gate_rate_correlation(gate: torch.Tensor, rates: torch.Tensor) -> float:
    """Spearman's rho across channels between the mean gate a_c and the rate r_c.

    Args:
        gate: (n, C) or (n, C, 1, 1) gate values a_{t,c} per input, averaged over every axis
            but the channel axis 1.
        rates: (C,) channel rates, as :func:`channel_rates` returns.

    Returns:
        rho in [-1, 1] over the channels where both are defined (NaN channels dropped), ties
        ranked by their average rank. NaN with a :class:`DegenerateInputWarning` when fewer
        than 2 channels remain or either side is constant on them.

    Raises:
        ValueError: the channel counts differ or ``gate`` has fewer than 2 dimensions.
    """
    if gate.ndim < 2 or rates.ndim != 1 or gate.shape[1] != rates.shape[0]:
        raise ValueError(
            f"gate has shape {tuple(gate.shape)} and rates {tuple(rates.shape)}: expected gate (n, C, ...) "
            "and rates (C,) with the same C"
        )
    mean_gate = gate.to(torch.float64).mean(dim=(0, *range(2, gate.ndim)))
    rates = rates.to(mean_gate)
    kept = ~(torch.isnan(mean_gate) | torch.isnan(rates))
    if kept.sum() < 2:
        warn_degenerate(f"gate_rate_correlation: {int(kept.sum())} channel(s) with a gate and a rate; returning NaN")
        return math.nan
    gate_ranks, rate_ranks = _average_ranks(mean_gate[kept]), _average_ranks(rates[kept])
    gate_ranks, rate_ranks = gate_ranks - gate_ranks.mean(), rate_ranks - rate_ranks.mean()
    scale = torch.linalg.vector_norm(gate_ranks) * torch.linalg.vector_norm(rate_ranks)
    if scale == 0:
        warn_degenerate("gate_rate_correlation: the gate or the rates are constant across channels; returning NaN")
        return math.nan
    return float((gate_ranks @ rate_ranks) / scale)


def _average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a 1-D tensor, tied values sharing the mean of their ranks."""
    _, inverse, counts = torch.unique(values, sorted=True, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).to(values.dtype)
    return (last - (counts - 1) / 2)[inverse]


def _pure(f: Branch) -> Branch:
    """f as a function of its input alone: a module's parameters and buffers detached.

    Raises:
        ValueError: f is a module with a submodule in training mode.
    """
    if not isinstance(f, nn.Module):
        return f
    training = [name or type(f).__name__ for name, module in f.named_modules() if module.training]
    if training:
        raise ValueError(
            f"the branch is in training mode ({', '.join(training[:3])}{', ...' if len(training) > 3 else ''}); "
            "call .eval() first: the Jacobian is of the eval-mode map (BN with its running statistics)"
        )
    state = {name: tensor.detach() for name, tensor in [*f.named_parameters(), *f.named_buffers()]}
    return lambda inputs: torch.func.functional_call(f, state, (inputs,))


def _as_inputs(x: torch.Tensor) -> torch.Tensor:
    """Check that ``x`` is a finite floating (n, ...) tensor with n >= 1; return it."""
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] < 1 or not x.is_floating_point():
        raise ValueError(
            f"x: got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}, expected a floating tensor (n inputs, ...)"
        )
    if not torch.isfinite(x).all():
        raise ValueError("x: holds NaN or inf, expected finite inputs")
    return x


def _as_channel_pair(x: torch.Tensor, fx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check that ``x`` and ``fx`` are finite floating (n, C, ...) tensors of one shape; return them."""
    for name, tensor in (("x", x), ("fx", fx)):
        if not isinstance(tensor, torch.Tensor) or tensor.ndim < 2 or not tensor.is_floating_point():
            raise ValueError(
                f"{name}: got {type(tensor).__name__} {tuple(getattr(tensor, 'shape', ()))}, "
                "expected a floating tensor (n inputs, C channels, ...)"
            )
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name}: holds NaN or inf, expected finite activations")
    if x.shape != fx.shape:
        raise ValueError(
            f"x has shape {tuple(x.shape)} and fx has shape {tuple(fx.shape)}: a state and its update "
            "must have one shape (take x_t from the block's 'input' hook, the shortcut's output)"
        )
    return x, fx.to(x.device)


def _live_rates(rates: torch.Tensor, caller: str) -> torch.Tensor | None:
    """The non-NaN rates, or None with a :class:`DegenerateInputWarning` when there are none."""
    live = rates[~torch.isnan(rates)]
    if live.numel() == 0:
        warn_degenerate(f"{caller}: every channel is dead (||x_c|| = 0); returning NaN")
        return None
    return live


def _rate_ratio(rates: torch.Tensor, low: float, high: float, caller: str) -> float:
    """q_high / q_low of the live rates: inf if only q_low is 0, NaN (warned) if both are or none is live."""
    live = _live_rates(rates, caller)
    if live is None:
        return math.nan
    bottom, top = torch.quantile(live, torch.tensor([low, high], dtype=live.dtype, device=live.device)).tolist()
    if top == 0.0:
        warn_degenerate(f"{caller}: every live channel has rate 0 (f(x) = 0, no dynamics); returning NaN")
        return math.nan
    return top / bottom if bottom > 0 else math.inf
