"""Pairwise distances shared by the probes."""

import torch

_PAIRS_PER_CHUNK = 1 << 22
"""Pairs x chunk width recomputed at a time by the exact difference (bounds its memory)."""


def squared_distances(x: torch.Tensor, y: torch.Tensor, exact_small: bool = False) -> torch.Tensor:
    """Squared Euclidean distances, (n, d) x (m, d) -> (n, m), by one matrix product.

    The Gram-matrix identity ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b loses about
    eps * (||a||^2 + ||b||^2) to cancellation, so callers centre both clouds by one common shift
    first; negative round-off is clamped to zero. With ``exact_small`` (for values that are used
    as they are, e.g. transport costs; a neighbour search that recomputes the distances it
    selects does not need it), entries below sqrt(eps) * (||a||^2 + ||b||^2), where that loss
    would be a noticeable fraction of the value (identical or nearly identical points), are
    recomputed as ||a - b||^2 from the difference: identical points give exactly 0, and a
    translation by v gives ||v||^2 to working precision.
    """
    x_norms, y_norms = x.square().sum(1), y.square().sum(1)
    scale = x_norms[:, None] + y_norms[None, :]
    squared = torch.addmm(scale, x, y.T, alpha=-2).clamp_min_(0)
    if not exact_small:
        return squared
    rows, cols = torch.nonzero(squared <= torch.finfo(squared.dtype).eps ** 0.5 * scale, as_tuple=True)
    chunk = max(1, _PAIRS_PER_CHUNK // max(1, x.shape[1]))
    for start in range(0, len(rows), chunk):
        r, c = rows[start:start + chunk], cols[start:start + chunk]
        squared[r, c] = (x[r] - y[c]).square().sum(1)
    return squared
