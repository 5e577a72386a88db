"""Exact Wasserstein distance between persistence diagrams whose points share one birth.

Vietoris-Rips H0 diagrams are such diagrams: every class is born at 0. The points then lie
on one vertical line, the Euclidean cost of matching (b, a) with (b, c) is |a - c|, and
sending (b, a) to the diagonal costs its persistence (a - b) / sqrt(2). For p >= 1 the cost
|a - c|^p is convex in a - c, so two crossing pairs can always be uncrossed without raising
the total: some optimal matching pairs the matched points in sorted order. An edit-distance
dynamic programme over the two sorted persistence lists (match the next two points, or send
either one to the diagonal) is therefore exact, in O(n m) time and O(m) memory. It replaces
the (n + m) x (n + m) optimal-transport problem of ``gudhi.wasserstein``, which stays its
reference in the tests.
"""

import numpy as np


def has_common_birth(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether every point of two (m, 2) diagrams has one and the same birth (empty ones too)."""
    births = np.concatenate([first[:, 0], second[:, 0]])
    return births.size == 0 or bool((births == births[0]).all())


def common_birth_wasserstein(first: np.ndarray, second: np.ndarray, order: float) -> float:
    """W_order (Euclidean ground metric) between two diagrams whose points share one birth.

    Args:
        first, second: (n, 2) and (m, 2) float64 off-diagonal (birth, death) pairs, every
            birth equal (check with :func:`has_common_birth`).
        order: p >= 1.

    Returns:
        The distance W_p (not W_p^p), in the diagrams' units; equal to
        ``gudhi.wasserstein.wasserstein_distance(first, second, order=p, internal_p=2)``.
    """
    lifetimes_a = np.sort(first[:, 1] - first[:, 0])
    lifetimes_b = np.sort(second[:, 1] - second[:, 0])
    to_diagonal_a = (lifetimes_a / np.sqrt(2)) ** order
    to_diagonal_b = (lifetimes_b / np.sqrt(2)) ** order
    # cost[j]: the cheapest way to handle the first i points of a and the first j of b;
    # row 0 sends b's first j points to the diagonal.
    b_to_diagonal_prefix = np.concatenate([[0.0], np.cumsum(to_diagonal_b)])
    cost = b_to_diagonal_prefix.copy()
    last_step = np.empty_like(cost)
    for lifetime, diagonal in zip(lifetimes_a, to_diagonal_a):
        # the i-th point of a goes to the diagonal, or is matched with b's j-th point ...
        last_step[0] = cost[0] + diagonal
        np.minimum(cost[1:] + diagonal, cost[:-1] + np.abs(lifetime - lifetimes_b) ** order, out=last_step[1:])
        # ... then any run of b's points before j goes to the diagonal: a prefix minimum
        cost = b_to_diagonal_prefix + np.minimum.accumulate(last_step - b_to_diagonal_prefix)
    return float(cost[-1] ** (1.0 / order))
