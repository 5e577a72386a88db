"""Empirical Lipschitz ratios of a layer from its inputs and outputs."""

import math

import torch

from ._checks import as_points, require_same, warn_degenerate

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


def lipschitz_ratios(x_in: torch.Tensor, x_out: torch.Tensor, pairs: int = 2000, seed: int = 0) -> dict[str, float]:
    """Ratios ||f(x_i) - f(x_j)|| / ||x_i - x_j|| over random pairs of distinct inputs.

    ``pairs`` index pairs (i, j), i != j, are drawn uniformly with replacement from a CPU
    generator seeded with ``seed`` (the same pairs on every device, the global RNG untouched).
    Pairs whose inputs coincide (||x_i - x_j|| = 0) are skipped.

    Args:
        x_in: (n, d_in) inputs of the layer, n >= 2.
        x_out: (n, d_out) its outputs for the same inputs in the same order; d_out may differ.
        pairs: number of pairs drawn.
        seed: seeds the draw.

    Returns:
        {"max", "p50", "p90", "p99"}: the largest ratio and quantiles (linear interpolation, as
        numpy's default), dimensionless when input and output share units. All NaN, with a
        :class:`DegenerateInputWarning`, when every drawn pair has coinciding inputs.
    """
    if pairs < 1:
        raise ValueError(f"pairs: got {pairs}, expected at least 1")
    x_in = as_points(x_in, "x_in", min_points=2)
    x_out = as_points(x_out, "x_out", min_points=2).to(x_in.device)
    require_same(x_in, x_out, ("x_in", "x_out"), axis=0)
    n = x_in.shape[0]
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(n, (pairs,), generator=generator)
    second = torch.randint(n - 1, (pairs,), generator=generator)
    second = (second + (second >= first).long()).to(x_in.device)
    first = first.to(x_in.device)
    input_distances = torch.linalg.vector_norm(x_in[first] - x_in[second], dim=1, dtype=torch.float64)
    output_distances = torch.linalg.vector_norm(x_out[first] - x_out[second], dim=1, dtype=torch.float64)
    distinct = input_distances > 0
    if not distinct.any():
        warn_degenerate(f"lipschitz_ratios: all {pairs} drawn pairs have identical inputs; returning NaN")
        return {"max": math.nan} | {name: math.nan for name in QUANTILES}
    ratios = output_distances[distinct] / input_distances[distinct]
    levels = torch.tensor(list(QUANTILES.values()), dtype=ratios.dtype, device=ratios.device)
    return {"max": float(ratios.max())} | dict(zip(QUANTILES, torch.quantile(ratios, levels).tolist()))
