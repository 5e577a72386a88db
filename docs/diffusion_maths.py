"""The diffusion limit of softmax attention with a distance score: the maths of docs/diffusion_limit.py.

Pure numpy functions (float64): the row-softmax kernel generator, the drift-diffusion operators
it should converge to on a circle, on the 2-sphere and on a curve with a learned metric, samplers,
and quadratures of the continuum (n -> infinity) operator.

Claim (metric-attention, arXiv 2412.18288, as restated in diffusion maps, Coifman and Lafon
2006, alpha = 0): for points x_1..x_n drawn from a density p on an m-dimensional manifold M and
the row-softmax kernel operator P_eps (P_eps H)(x_i) = sum_j k_ij H(x_j) / sum_j k_ij with
k_ij = exp(-||x_i - x_j||^2 / eps) (softmax attention with score -||x_i - x_j||^2 / eps,
values H(x_j)), the generator (P_eps H - H) / eps tends to c (Lap H + 2 <grad log p, grad H>).

The constant, derived (our derivation): take normal coordinates u around x, y = x + u + O(|u|^2)
and ||x - y||^2 = |u|^2 + O(|u|^4) (the chord is the geodesic up to fourth order). The kernel
exp(-|u|^2 / eps) is a Gaussian of variance sigma^2 = eps / 2 per coordinate, so its moments are
E[u_a] = 0, E[u_a u_b] = (eps / 2) delta_ab, and odd moments vanish. Expanding
H(y) - H(x) = grad H . u + u^T (Hess H) u / 2 and p(y) = p(x) + grad p . u,

    num = int k (H(y) - H(x)) p(y) dy = G [ (eps/2) grad p . grad H + (eps/4) p Lap H ] + O(G eps^2)
    den = int k p(y) dy             = G [ p + O(eps) ]

with G = (pi eps)^(m/2). The fourth-order terms (chord vs geodesic, volume element) enter both
at relative order eps, and an odd moment times an even correction is again O(eps^2), so

    (P_eps H - H) / eps = num / (eps den) = (1/4) [Lap H + 2 grad log p . grad H] + O(eps),

i.e. c = 1/4 for exp(-d^2 / eps) (c = 1/2 for exp(-d^2 / (2 eps)), c = 1 for exp(-d^2 / (4 eps)):
c is 1/2 of the kernel's per-coordinate variance per unit eps). Sampling noise: the kernel sees
about n eps^(m/2) points at distances sqrt(eps), so the generator's standard deviation is about
(n eps^(m/2 + 1))^(-1/2): the error is O(eps) + O((n eps^(m/2+1))^(-1/2)), smallest at
eps ~ n^(-1/(m/2+3)), where it is ~ n^(-1/(m/2+3)) (n^(-2/7) on a curve, n^(-1/4) on a surface).

A learned metric: the kernel exp(-||W(x - y)||^2 / eps) on a curve x(theta) in token space is
the above with the metric g = W^T W induced on the curve; with speed s(theta) = ||W x'(theta)||
and p the density in theta, Lap_g H = (H'/s)'/s and the density against g's length is p / s, so
c [Lap_g H + 2 <grad_g log(p/s), grad_g H>_g] = c [H'' + H' (2 p'/p - 3 s'/s)] / s^2, which a
direct Taylor expansion in theta confirms (||W(x(theta+h) - x(theta))||^2 = s^2 h^2 + s s' h^3 + ...).
The unit circle is s = 1. With the score -||W_q x_i - W_k x_j||^2 / eps there is no such limit:
the softmax concentrates on argmin_j ||W_q x_i - W_k x_j||, which is not x_i unless W_q = W_k on
the curve, so eps (P_eps H - H) -> H(x*) - H(x) and the generator grows like 1 / eps.
"""

from __future__ import annotations

import math

import numpy as np

C_THEORY = 0.25
"""The constant c for the kernel exp(-d^2 / eps) (derived in the module docstring)."""
CIRCLE_A = 0.5
"""Circle density p(theta) = (1 + a cos theta) / (2 pi)."""
SPHERE_B = 0.5
"""Sphere density p(x) = (1 + b z) / (4 pi) (against area)."""
CIRCLE_GRID = 8192
"""Continuum operator (n -> infinity, the bias alone) on the circle: the periodic trapezoid rule
on a uniform grid of angles, weighted by p (spectrally accurate: the grid step is 1/9 of the
kernel's width sqrt(eps / 2) at the smallest eps)."""
SPHERE_NODES = (64, 48)
"""On the sphere, around each target x: Gauss-Legendre in the geodesic radius rho on
[0, min(pi, 10 sqrt(eps))] and the trapezoid rule in the angle psi (area element sin rho)."""


def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||a_i - b_j||^2 for a (n, D) and b (k, D): (n, k), clamped at 0."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


def generator(queries: np.ndarray, keys: np.ndarray, h_keys: np.ndarray, h_queries: np.ndarray,
              eps: float, weights: np.ndarray | None = None) -> np.ndarray:
    """(P_eps H - H) / eps: softmax attention with score -||q_i - k_j||^2 / eps and values H(k_j).

    Args:
        queries: (n, D); keys: (k, D) (the same array for self-attention on sample points).
        h_keys: (k, F) H at the keys; h_queries: (n, F) H at the queries (F test functions).
        eps: the kernel's scale, > 0, in squared distance units.
        weights: (k,) quadrature weights of the keys (proportional to p times the cell
            volume), or None (samples: every key weighs 1).

    Returns:
        (n, F), in units of H per unit eps.
    """
    return kernel_generator(sq_dists(queries, keys), h_keys, h_queries, eps, weights)


def kernel_generator(sq: np.ndarray, h_keys: np.ndarray, h_queries: np.ndarray, eps: float,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """:func:`generator` from the squared distances sq (n, k), reused across eps by the sweeps."""
    scores = sq * (-1.0 / eps)
    if weights is not None:
        scores += np.log(weights)[None, :]
    scores -= scores.max(1, keepdims=True)
    kernel = np.exp(scores, out=scores)
    return (kernel @ h_keys / kernel.sum(1, keepdims=True) - h_queries) / eps


def curve_operator(theta: np.ndarray, h1: np.ndarray, h2: np.ndarray, speed_sq: np.ndarray | float = 1.0,
                   speed_sq_d: np.ndarray | float = 0.0, a: float = CIRCLE_A) -> np.ndarray:
    """Lap_g H + 2 <grad_g log q, grad_g H>_g on a closed curve, q the density against g's length.

    Args:
        theta: (n,) angles; h1, h2: H' and H'' at theta (d/dtheta); speed_sq, speed_sq_d:
            s^2 = g(x', x') and d(s^2)/dtheta (1 and 0 on the unit circle).
        a: the density in theta is p = (1 + a cos theta) / (2 pi).

    Returns:
        (n,): [H'' + H' (2 p'/p - 3 s'/s)] / s^2 (the module docstring derives it).
    """
    log_p_d = -a * np.sin(theta) / (1 + a * np.cos(theta))
    log_s_d = np.asarray(speed_sq_d) / (2 * np.asarray(speed_sq))
    return (h2 + h1 * (2 * log_p_d - 3 * log_s_d)) / speed_sq


def circle_tests(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """H, H', H'' (each (n, 2)) of the circle's test functions cos(2 theta) and sin(theta)."""
    c2, s2, c1, s1 = np.cos(2 * theta), np.sin(2 * theta), np.cos(theta), np.sin(theta)
    return np.stack([c2, s1], 1), np.stack([-2 * s2, c1], 1), np.stack([-4 * c2, -s1], 1)


CIRCLE_TESTS = ("cos2theta", "sintheta")
SPHERE_TESTS = ("z", "xy")


def circle_reference(theta: np.ndarray, a: float = CIRCLE_A) -> np.ndarray:
    """Lap H + 2 grad log p . grad H, (n, 2), for :data:`CIRCLE_TESTS` on the unit circle."""
    _, h1, h2 = circle_tests(theta)
    return np.stack([curve_operator(theta, h1[:, f], h2[:, f], a=a) for f in range(2)], 1)


def sphere_tests(x: np.ndarray) -> np.ndarray:
    """H = z and H = x y at the points x (n, 3) of the unit sphere: (n, 2)."""
    return np.stack([x[:, 2], x[:, 0] * x[:, 1]], 1)


def sphere_reference(x: np.ndarray, b: float = SPHERE_B) -> np.ndarray:
    """Lap H + 2 grad log p . grad H, (n, 2), for H = z (l = 1) and H = x y (l = 2), p ~ 1 + b z.

    Lap H = -l (l + 1) H; grad log p is the tangent part of (0, 0, b / (1 + b z)); the tangent
    gradients are e_z - z x and (y, x, 0) - 2 x y x, so the drift terms are g (1 - z^2) and -2 g x y z.
    """
    xx, yy, zz = x.T
    g = b / (1 + b * zz)
    return np.stack([-2 * zz + 2 * g * (1 - zz ** 2), -6 * xx * yy - 4 * g * xx * yy * zz], 1)


def relative_rms(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per column: RMS of (estimate - reference) over RMS of reference; (n, F) -> (F,)."""
    return np.sqrt(((estimate - reference) ** 2).mean(0) / (reference ** 2).mean(0))


def fitted_constant(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Least-squares c in estimate ~ c reference, per column: (n, F) -> (F,)."""
    return (estimate * reference).sum(0) / (reference ** 2).sum(0)


def log_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Slope of log y against log x (least squares)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# --- samples and quadratures -----------------------------------------------------------------------

def sample_circle(n: int, rng: np.random.Generator, a: float = CIRCLE_A) -> np.ndarray:
    """n angles from p(theta) ~ 1 + a cos theta, by rejection: (n,)."""
    out = np.empty(0)
    while out.size < n:
        theta = rng.uniform(0, 2 * np.pi, 2 * n)
        out = np.concatenate([out, theta[rng.uniform(0, 1 + a, 2 * n) < 1 + a * np.cos(theta)]])
    return out[:n]


def sample_sphere(n: int, rng: np.random.Generator, b: float = SPHERE_B) -> np.ndarray:
    """n points of the unit sphere from p ~ 1 + b z (against area), by rejection: (n, 3)."""
    out = np.empty((0, 3))
    while len(out) < n:
        x = rng.standard_normal((2 * n, 3))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out = np.concatenate([out, x[rng.uniform(0, 1 + b, 2 * n) < 1 + b * x[:, 2]]])
    return out[:n]


def circle_points(theta: np.ndarray) -> np.ndarray:
    """(cos theta, sin theta): (n, 2)."""
    return np.stack([np.cos(theta), np.sin(theta)], 1)


def circle_grid(a: float = CIRCLE_A) -> tuple[np.ndarray, np.ndarray]:
    """:data:`CIRCLE_GRID` equally spaced angles (k,) and their quadrature weights 1 + a cos theta (k,)."""
    grid = np.arange(CIRCLE_GRID) * 2 * np.pi / CIRCLE_GRID
    return grid, 1 + a * np.cos(grid)


def circle_continuum(theta: np.ndarray, eps: float, a: float = CIRCLE_A) -> np.ndarray:
    """The continuum generator (int k (H(y) - H(x)) p(y) dy / int k p dy) / eps on the circle.

    Args:
        theta: (t,) target angles; eps: the kernel's scale.

    Returns:
        (t, 2) for :data:`CIRCLE_TESTS`, by the trapezoid rule on :func:`circle_grid`.
    """
    grid, weights = circle_grid(a)
    return generator(circle_points(theta), circle_points(grid), circle_tests(grid)[0], circle_tests(theta)[0],
                     eps, weights)


def sphere_continuum(x: np.ndarray, eps: float, b: float = SPHERE_B) -> np.ndarray:
    """The continuum generator on the unit sphere at the targets x (t, 3): (t, 2) for :data:`SPHERE_TESTS`.

    y = cos(rho) x + sin(rho) (cos(psi) e1 + sin(psi) e2), ||x - y||^2 = 2 - 2 cos(rho),
    dA = sin(rho) drho dpsi; nodes :data:`SPHERE_NODES`.
    """
    nodes, node_weights = np.polynomial.legendre.leggauss(SPHERE_NODES[0])
    rho_max = min(np.pi, 10 * math.sqrt(eps))
    rho = (nodes + 1) * rho_max / 2
    psi = np.arange(SPHERE_NODES[1]) * 2 * np.pi / SPHERE_NODES[1]
    e1 = np.cross(x, np.where(np.abs(x[:, 2:]) < 0.9, [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]))
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(x, e1)
    direction = np.cos(psi)[None, :, None] * e1[:, None] + np.sin(psi)[None, :, None] * e2[:, None]
    y = np.cos(rho)[None, :, None, None] * x[:, None, None] + np.sin(rho)[None, :, None, None] * direction[:, None]
    weight = (np.exp(-(2 - 2 * np.cos(rho)) / eps) * np.sin(rho) * node_weights)[None, :, None] * (1 + b * y[..., 2])
    h_y = sphere_tests(y.reshape(-1, 3)).reshape(*y.shape[:3], 2)
    mean = (weight[..., None] * h_y).sum((1, 2)) / weight.sum((1, 2))[:, None]
    return (mean - sphere_tests(x)) / eps




def ellipse_speed(theta: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s^2 and d(s^2)/dtheta of the curve theta -> a cos(theta) + b sin(theta) (a, b: (r,) vectors).

    The image under a linear map W of a circle of radius r in a 2-plane (u1, u2) of token space
    is such a curve with a = r W u1, b = r W u2; its speed s is the metric W^T W's on the circle.
    """
    sin, cos = np.sin(theta), np.cos(theta)
    aa, bb, ab = a @ a, b @ b, a @ b
    speed_sq = aa * sin ** 2 + bb * cos ** 2 - 2 * ab * sin * cos
    return speed_sq, 2 * sin * cos * (aa - bb) - 2 * ab * np.cos(2 * theta)


def metric_assumptions(w_q, w_k, b_q, b_k, tokens: np.ndarray, tau: float, rng: np.random.Generator) -> dict:
    """The score's metric properties on real tokens, d(x, y) = ||W_q x + b_q - W_k y - b_k||.

    Args: w_q, w_k (d_h, C) and b_q, b_k (d_h,): one head's projections; tokens (B, N, C): its
    inputs on B images; tau: its temperature; rng: draws the triples.

    Returns, as floats: asymmetry: ||W_q - W_k||_F / ||W_q||_F; self_distance_ratio: median d(x, x)^2 over median
    d(x_i, x_j)^2 (i != j, same image); triangle_violations: fraction of token triples of an image
    with d(x, z) > d(x, y) + d(y, z) (1e-9 slack); null_dimensions: C - rank(W_k) (directions of
    zero distance: a pseudo-metric when > 0); token_spacing_over_tau: median d(x_i, x_j)^2 / tau
    (large: each softmax row sees few tokens; about 1: it averages over many).
    """
    q, k = tokens @ w_q.T + b_q, tokens @ w_k.T + b_k
    dist = np.sqrt(np.stack([sq_dists(qi, ki) for qi, ki in zip(q, k)]))
    off = ~np.eye(dist.shape[1], dtype=bool)
    triples = rng.integers(0, dist.shape[1], (len(dist), 200, 3))
    b = np.arange(len(dist))[:, None]
    x, y, z = triples[..., 0], triples[..., 1], triples[..., 2]
    violated = dist[b, x, z] > dist[b, x, y] + dist[b, y, z] + 1e-9
    spacing = np.median(dist[:, off] ** 2)
    return dict(asymmetry=np.linalg.norm(w_q - w_k) / np.linalg.norm(w_q),
                self_distance_ratio=np.median(np.diagonal(dist, axis1=1, axis2=2) ** 2) / spacing,
                triangle_violations=violated.mean(), null_dimensions=w_k.shape[1] - np.linalg.matrix_rank(w_k),
                tau=tau, token_spacing_over_tau=spacing / tau)
