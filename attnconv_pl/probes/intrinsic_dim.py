"""Intrinsic dimension: TwoNN and Levina-Bickel MLE in torch, other estimators from scikit-dimension.

TwoNN and MLE share one blocked k-nearest-neighbour pass (:func:`intrinsic_dimensions`), run on
the device of the points with memory O(n * block_size).

Duplicates. Identical points (a dead layer, float16 round-off of close activations) have zero
nearest-neighbour distances, which make both estimators infinite or undefined. When the
neighbour pass finds any, the estimate is made on the distinct points instead (equivalently,
zero-distance neighbours are dropped and each location counts once), with a
:class:`DegenerateInputWarning`. When too few distinct points remain, or all neighbour distance
ratios are 1, the estimate is NaN, again with a warning; never an exception, never inf.
"""

import functools
import math

import numpy as np
import torch

from ._checks import as_points, warn_degenerate
from ._distances import squared_distances

TORCH_METHODS = ("twonn", "mle")


@functools.cache
def skdim_estimators() -> dict[str, type]:
    """scikit-dimension's estimator classes by lower-case name (imported on first use: slow import)."""
    import skdim

    return {
        name.lower(): cls
        for name, cls in vars(skdim.id).items()
        if isinstance(cls, type) and name.lower() not in TORCH_METHODS
    }


def _neighbour_distances(centred: torch.Tensor, k: int, block_size: int) -> torch.Tensor:
    """Distances from each point to its k nearest other points, ascending, (n, d) -> (n, k) float64.

    Neighbours are selected block by block from a (block_size, n) squared-distance matrix (one
    matrix product and a top-k per block, accurate for points centred near the origin); the
    selected distances are then recomputed from coordinate differences in float64, so they are
    exactly 0 for identical rows, positive for distinct ones, and keep full relative precision.
    """
    n = centred.shape[0]
    distances = torch.empty(n, k, dtype=torch.float64, device=centred.device)
    for start in range(0, n, block_size):
        block = centred[start : start + block_size]
        rows = torch.arange(block.shape[0], device=centred.device)
        squared = squared_distances(block, centred)
        squared[rows, start + rows] = math.inf
        neighbours = squared.topk(k, dim=1, largest=False, sorted=False).indices
        offsets = centred[neighbours] - block[:, None, :]
        exact = torch.linalg.vector_norm(offsets, dim=2, dtype=torch.float64)
        distances[start : start + block.shape[0]] = exact.sort(dim=1).values
    return distances


def _twonn(distances: torch.Tensor, discard_fraction: float) -> float:
    """TwoNN (Facco et al. 2017) from (n, >=2) ascending neighbour distances, all positive.

    The ratios mu = r2 / r1 follow a Pareto law with exponent d, so -log(1 - F(mu)) = d log(mu).
    As in skdim.id.TwoNN (method "linear"): sort the n ratios, discard the largest
    ``discard_fraction`` of them, and fit a line through the origin to
    (log mu_(i), -log(1 - i / n)), i = 1..n_keep; the slope is the dimension.
    """
    n = distances.shape[0]
    n_keep = int(n * (1 - discard_fraction))
    log_mu = torch.log(distances[:, 1] / distances[:, 0]).sort().values[:n_keep]
    empirical_cdf = torch.arange(1, n_keep + 1, dtype=torch.float64, device=distances.device) / n
    target = -torch.log1p(-empirical_cdf)
    denominator = log_mu.square().sum()
    if denominator == 0:
        warn_degenerate("twonn: all kept ratios r2 / r1 equal 1 (equidistant neighbours); returning NaN")
        return math.nan
    return float((log_mu * target).sum() / denominator)


def _mle(distances: torch.Tensor) -> float:
    """Levina-Bickel MLE from (n, k) ascending neighbour distances, all positive.

    Per point, m_i = (k - 1) / sum_{j<k} log(r_k / r_j). The points are combined as
    skdim.id.MLE does by default (``comb="mle"``, MacKay and Ghahramani's correction): the
    harmonic mean 1 / mean_i(1 / m_i).
    """
    k = distances.shape[1]
    inverse_estimates = torch.log(distances[:, -1:] / distances).sum(1) / (k - 1)
    mean_inverse = inverse_estimates.mean()
    if mean_inverse == 0:
        warn_degenerate("mle: every point has all its neighbours at one distance; returning NaN")
        return math.nan
    return float(1 / mean_inverse)


def intrinsic_dimensions(
    x: torch.Tensor,
    methods: tuple[str, ...] = TORCH_METHODS,
    *,
    k: int = 20,
    discard_fraction: float = 0.1,
    block_size: int = 256,
) -> dict[str, float]:
    """TwoNN and/or MLE intrinsic dimension from one k-nearest-neighbour pass on x's device.

    Args:
        x: (n, d) points; n >= 3 for "twonn", n >= k + 1 for "mle".
        methods: a subset of ("twonn", "mle").
        k: neighbours per point for "mle" (Levina-Bickel's k; scikit-dimension's default 20).
        discard_fraction: fraction of the largest TwoNN ratios left out of the fit (0.1 as in
            Facco et al. and scikit-dimension).
        block_size: rows per block of the neighbour search; memory is O(n * block_size).

    Returns:
        {method: dimension} for each requested method (NaN with a warning when degenerate, see
        the module docstring).
    """
    unknown = set(methods) - set(TORCH_METHODS)
    if unknown or not methods:
        raise ValueError(f"methods: got {methods!r}, expected a non-empty subset of {TORCH_METHODS}")
    if not 0 <= discard_fraction < 1:
        raise ValueError(f"discard_fraction: got {discard_fraction}, expected a value in [0, 1)")
    if k < 2:
        raise ValueError(f"k: got {k}, expected at least 2 neighbours")
    n_neighbours = k if "mle" in methods else 2
    x = as_points(
        x, "x", min_points=n_neighbours + 1, hint=f"Methods {tuple(methods)} with k={k} need k + 1 points."
    )
    centred = x - x.mean(0)
    distances = _neighbour_distances(centred, n_neighbours, block_size)
    if (distances[:, 0] == 0).any():
        distinct = torch.unique(centred, dim=0)
        if distinct.shape[0] <= n_neighbours:
            warn_degenerate(
                f"intrinsic dimension: only {distinct.shape[0]} distinct points among {x.shape[0]}, "
                f"{n_neighbours + 1} needed; returning NaN"
            )
            return {method: math.nan for method in methods}
        warn_degenerate(
            f"intrinsic dimension: {x.shape[0] - distinct.shape[0]} duplicate points merged; "
            f"estimating on {distinct.shape[0]} distinct points"
        )
        distances = _neighbour_distances(distinct, n_neighbours, block_size)
    fits = {"twonn": lambda: _twonn(distances, discard_fraction), "mle": lambda: _mle(distances)}
    return {method: fits[method]() for method in methods}


def intrinsic_dimension(x: torch.Tensor, method: str = "twonn", **kw) -> float:
    """Intrinsic dimension of a point cloud by the named estimator.

    Args:
        x: (n, d) points, any device.
        method: "twonn" or "mle" run in torch on x's device (keywords as in
            :func:`intrinsic_dimensions`: ``k``, ``discard_fraction``, ``block_size``). Any other
            name is a scikit-dimension estimator, case-insensitive ("lpca", "danco", "ess",
            "mind_ml", "corrint", "knn", "mada", "mom", "tle", "fishers", "gride", "ph"), built as
            ``skdim.id.<Name>(**kw)`` and fitted on a float64 CPU copy; it keeps its own behaviour
            on degenerate data.

    Returns:
        The estimated dimension (a float, not rounded).
    """
    name = method.lower()
    if name in TORCH_METHODS:
        return intrinsic_dimensions(x, (name,), **kw)[name]
    estimators = skdim_estimators()
    if name not in estimators:
        known = ", ".join(TORCH_METHODS + tuple(sorted(estimators)))
        raise ValueError(f"method: unknown estimator {method!r}; known: {known}")
    points = as_points(x, "x", min_points=2).detach().cpu().to(torch.float64).numpy()
    return float(estimators[name](**kw).fit(np.ascontiguousarray(points)).dimension_)
