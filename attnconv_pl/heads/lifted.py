"""The lifted (convex) form of a head: its predictions are linear in a few matrices Z_b.

Every convex-capable head is a sum of bilinear units, and its prediction on one input is

    y_hat = Re sum_b < Phi_b, Z_b >,       Phi_b = left_b kron right,

where, for each of the P blocks b, ``left_b`` is a (p1 x q1) matrix and ``right`` a (p2 x q2)
matrix computed from the tokens, so that ``Phi_b`` is (p1 p2) x (q1 q2); ``Z_b`` (p x q) with
``p = p1 p2`` and ``q = q1 q2 c`` is read as (p, q1 q2, c), and ``<Phi_b, Z_b>`` contracts the
first two axes, giving c numbers:

    y_hat[e] = Re sum_b sum_{u,x,v,y} left_b[u, v] right[x, y] Z_b[u p2 + x, (v q2 + y) c + e].

A head with m units per block is the Burer-Monteiro factorisation ``Z_b = sum_j a_bj b_bj^H``
(a_bj in R^p or C^p, b_bj in R^q or C^q) and its weight decay (1/2) sum (|a|^2 + |b|^2) is at
least ``sum_b ||Z_b||_*``, with equality at the best factorisation (the SVD), which needs
m >= rank(Z_b). Hence the convex program (1/2n) ||y_hat - Y||^2 + beta sum_b ||Z_b||_* has the
optimum of the non-convex head once m >= max_b rank(Z_b*).

The liftings (n inputs X_i, s tokens of width d, c classes):

- attention (``attention_lifting``): left_b = x_b (d x 1), the gated token mean
  x_b = X^T g_b / s, with g_b = 1 (linear attention, P = 1) or g_b = 1[X u_b >= 0]
  (gated ReLU); right = G = X^T X / s (d x d). So Z_b is d^2 x dc, rows (a, k), columns (l, e),
  and y_hat[e] = sum_b sum_{k,l} G[k, l] x_b^T Z_b[(:, k), (l, e)]. The head
  x_b^T A_j G B_j has Z_b = sum_j vec(A_j) vec(B_j)^T (row-major vec).
- mixer (``mixer_lifting``): left_b = X diag(g_b) (s x d) with the channel gates
  g_b = 1[X^T u_b >= 0] (u_b in R^s); right = 1 (1 x 1). Z_b is s x dc, rows tokens t,
  columns (k, e); the token-mixing unit (a in R^s, B in R^{d x c}) has Z_b = a vec(B)^T.
- fno (``fno_lifting``): left_f = X_hat[f] (d x 1), the real FFT of the tokens at frequency f
  (f = 0..s//2, complex), right = 1. Z_f is d x c (complex; real where X_hat[f] is, f = 0 and
  s/2); y_hat = Re sum_f X_hat[f]^T Z_f. The spectral units (kernels K_j, readouts R_j) give
  Z_f = (w_f / s) sum_j K_hat_j[f] conj(R_hat_j[f])^T (:class:`~attnconv_pl.heads.modules.FNOHead`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class Lifting:
    """The lifted data of n inputs (see the module docstring).

    Attributes:
        left: (n, P, p1, q1), real or complex: the per-block factor of the lifted features.
        right: (n, p2, q2), real: the factor shared by the blocks.
        num_classes: c.
    """

    left: Tensor
    right: Tensor
    num_classes: int

    @property
    def num_blocks(self) -> int:
        """P, the number of blocks Z_b."""
        return self.left.shape[1]

    @property
    def block_shape(self) -> tuple[int, int]:
        """(p, q) = (p1 p2, q1 q2 c), the shape of each Z_b."""
        (p1, q1), (p2, q2) = self.left.shape[2:], self.right.shape[1:]
        return p1 * p2, q1 * q2 * self.num_classes

    def real_blocks(self) -> list[bool]:
        """Per block, whether its features are real (then its Z_b can be taken real)."""
        if not self.left.is_complex():
            return [True] * self.num_blocks
        return [bool((self.left[:, b].imag == 0).all()) for b in range(self.num_blocks)]

    def dense_features(self) -> Tensor:
        """Phi (n, P, p, q / c): the explicit lifted features, n p q / c numbers per block (small
        instances only: the exact solver)."""
        n, blocks, p1, q1 = self.left.shape
        p2, q2 = self.right.shape[1:]
        phi = torch.einsum("nbuv,nxy->nbuxvy", self.left, self.right.to(self.left.dtype))
        return phi.reshape(n, blocks, p1 * p2, q1 * q2)

    def cast(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``left`` and ``right`` cast to ``dtype``."""
        return self.left.to(dtype), self.right.to(dtype)

    def dtype_with(self, other: Tensor) -> torch.dtype:
        """The dtype that holds the features and ``other``."""
        return torch.promote_types(torch.promote_types(self.left.dtype, self.right.dtype), other.dtype)

    def block_view(self, Z: Tensor) -> Tensor:
        """Blocks (P, p, q) viewed as (P, p1, p2, q1, q2, c)."""
        (p1, q1), (p2, q2) = self.left.shape[2:], self.right.shape[1:]
        return Z.reshape(self.num_blocks, p1, p2, q1, q2, self.num_classes)


def _real(x: Tensor) -> Tensor:
    return x.real if x.is_complex() else x


def lifted_predict(lifting: Lifting, Z: Tensor) -> Tensor:
    """The linear map L(Z): predictions (n, c), real, of the blocks ``Z`` (P, p, q)."""
    dtype = lifting.dtype_with(Z)
    left, right = lifting.cast(dtype)
    return _real(torch.einsum("nbuv,nxy,buxvyc->nc", left, right, lifting.block_view(Z.to(dtype))))


def lifted_adjoint(lifting: Lifting, V: Tensor) -> Tensor:
    """The adjoint L^*(V) (P, p, q) of ``V`` (n, c), real, for the real inner product
    Re tr(A^H B): L^*(V)_b = sum_i conj(Phi_ib) (outer) V_i. Forms P p q numbers, never n p q."""
    left, right = lifting.cast(lifting.dtype_with(V))
    W = torch.einsum("nbuv,nxy,nc->buxvyc", left.conj(), right, V.to(left.dtype))
    return W.reshape(lifting.num_blocks, *lifting.block_shape)


def adjoint_matvec(lifting: Lifting, V: Tensor, x: Tensor) -> Tensor:
    """L^*(V)_b x_b for every block, matrix-free: ``x`` (P, q) -> (P, p)."""
    left, right = lifting.cast(lifting.dtype_with(x))
    (p1, q1), (p2, q2) = left.shape[2:], right.shape[1:]
    X = x.reshape(lifting.num_blocks, q1, q2, lifting.num_classes)
    T = torch.einsum("bvyc,nc->nbvy", X, V.to(left.dtype))
    return torch.einsum("nbuv,nbvy,nxy->bux", left.conj(), T, right).reshape(lifting.num_blocks, p1 * p2)


def adjoint_rmatvec(lifting: Lifting, V: Tensor, u: Tensor) -> Tensor:
    """L^*(V)_b^H u_b for every block, matrix-free: ``u`` (P, p) -> (P, q)."""
    left, right = lifting.cast(lifting.dtype_with(u))
    (p1, _), (p2, _) = left.shape[2:], right.shape[1:]
    U = u.reshape(lifting.num_blocks, p1, p2)
    S = torch.einsum("nbuv,bux,nxy->nbvy", left, U, right)
    return torch.einsum("nbvy,nc->bvyc", S, V.to(left.dtype)).reshape(lifting.num_blocks, -1)


def lifted_blocks(left: Tensor, right: Tensor) -> Tensor:
    """Z_b = sum_j left_bj right_bj^H (P, p, q) of a head's unit factors ``left`` (P, m, p) and
    ``right`` (P, m, q)."""
    return left.transpose(1, 2) @ right.conj()


def block_singular_values(left: Tensor, right: Tensor) -> Tensor:
    """The singular values (P, min(m, p, q)) of the blocks ``lifted_blocks(left, right)``,
    without forming them: with the reduced QR left^T = Q_l R_l, right^T = Q_r R_r they are those
    of the small R_l R_r^H."""
    return torch.linalg.svdvals(torch.linalg.qr(left.transpose(1, 2)).R @ torch.linalg.qr(right.transpose(1, 2)).R.mH)


def hyperplane_gates(x: Tensor, directions: Tensor) -> Tensor:
    """Gates 1[x u_b >= 0] (..., P), in ``x``'s dtype, of rows ``x`` (..., w) and the fixed
    directions (w, P) (the hyperplane arrangement of gated ReLU units)."""
    return (x @ directions.to(x.dtype) >= 0).to(x.dtype)


def gate_directions(width: int, count: int, seed: int) -> Tensor:
    """``count`` fixed random hyperplane normals (width, count), float64, i.i.d. N(0, 1) drawn
    by a generator seeded with ``seed`` (the same gates in every process and run)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(width, count, generator=generator, dtype=torch.float64)


def attention_lifting(tokens: Tensor, num_classes: int, directions: Optional[Tensor] = None) -> Lifting:
    """The lifting of (gated) linear attention heads on ``tokens`` (n, s, d), c = ``num_classes``.

    Blocks: one per gate, g_b = 1[X u_b >= 0] on tokens for the columns u_b of ``directions``
    (d, P), or the single all-ones gate when None. left (n, P, d, 1) = X^T g_b / s;
    right (n, d, d) = X^T X / s.
    """
    s = tokens.shape[1]
    if directions is None:
        gated_means = tokens.mean(dim=1, keepdim=True)
    else:
        gated_means = torch.einsum("nsb,nsd->nbd", hyperplane_gates(tokens, directions), tokens) / s
    gram = tokens.transpose(1, 2) @ tokens / s
    return Lifting(gated_means.unsqueeze(-1), gram, num_classes)


def mixer_lifting(tokens: Tensor, num_classes: int, directions: Tensor) -> Lifting:
    """The lifting of gated token-mixing units on ``tokens`` (n, s, d), c = ``num_classes``: one
    block per column u_b of ``directions`` (s, P); left (n, P, s, d) = X diag(1[X^T u_b >= 0]);
    right = 1."""
    gates = hyperplane_gates(tokens.transpose(1, 2), directions)  # (n, d, P)
    left = tokens.unsqueeze(1) * gates.transpose(1, 2).unsqueeze(2)
    return Lifting(left, tokens.new_ones(len(tokens), 1, 1), num_classes)


def fno_lifting(tokens: Tensor, num_classes: int) -> Lifting:
    """The lifting of spectral (FNO) units on ``tokens`` (n, s, d), c = ``num_classes``: one
    block per real-FFT frequency f = 0..s//2; left (n, F, d, 1) = rfft(X, over tokens)[f];
    right = 1."""
    spectrum = torch.fft.rfft(tokens, dim=1)  # (n, F, d)
    return Lifting(spectrum.unsqueeze(-1), tokens.new_ones(len(tokens), 1, 1), num_classes)
