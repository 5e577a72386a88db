"""Pairwise distances shared by the probes."""

import torch


def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, (n, d) x (m, d) -> (n, m), by one matrix product.

    The Gram-matrix identity ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b loses about
    eps * ||a||^2 to cancellation, so callers centre both clouds by one common shift first.
    Negative round-off is clamped to zero.
    """
    norms = x.square().sum(1)[:, None] + y.square().sum(1)[None, :]
    return torch.addmm(norms, x, y.T, alpha=-2).clamp_min_(0)
