"""Compactness of a point cloud: total variance and participation ratio."""

import torch

from ._checks import as_points


def _centred(x: torch.Tensor) -> torch.Tensor:
    """(n, d) -> (n, d) with column means zero.

    Shifting by the first point before taking the mean keeps identical points exactly zero
    (the mean of n copies of v is not always v in floating point).
    """
    shifted = x - x[:1]
    return shifted - shifted.mean(0)


def total_variance(x: torch.Tensor) -> float:
    """Total variance mean_i ||x_i - mean(x)||^2 of a point cloud.

    Equals the trace of the covariance matrix normalised by 1/n (population convention).

    Args:
        x: (n, d) points, n >= 1, any device.

    Returns:
        The variance in squared units of x; 0.0 for a cloud of identical points.
    """
    x = as_points(x, "x")
    return float(_centred(x).square().sum(1).mean())


def participation_ratio(x: torch.Tensor) -> float:
    """Participation ratio (sum_k lambda_k)^2 / sum_k lambda_k^2 of the covariance spectrum.

    The effective number of directions the cloud spreads over: 1 for points on a line, d for an
    isotropic cloud in R^d. Computed without an eigendecomposition as
    1 / ||C / trace(C)||_F^2 (no overflow for large activations), using whichever of the (d, d)
    covariance or the (n, n) Gram matrix is smaller (they share their non-zero spectrum).

    Args:
        x: (n, d) points, n >= 1, any device.

    Returns:
        A float in [1, min(n - 1, d)]; 0.0 for a cloud of identical points (no direction of
        spread), a documented value rather than the undefined 0 / 0.
    """
    x = as_points(x, "x")
    centred = _centred(x)
    second_moment = centred.T @ centred if x.shape[1] <= x.shape[0] else centred @ centred.T
    trace = torch.diagonal(second_moment).sum()
    if trace == 0:
        return 0.0
    return float(1 / (second_moment / trace).square().sum())
