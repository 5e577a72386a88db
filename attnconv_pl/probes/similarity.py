"""Representation similarity: centred kernel alignment (CKA) with the linear kernel.

CKA is a *similarity*, not a distance: 1 means the two representations of the same inputs are
the same up to an orthogonal transform and an isotropic scaling (and a translation), values near
0 mean unrelated representations. Linear CKA (Kornblith et al. 2019) of features X (n, d1) and
Y (n, d2), both centred over the inputs, is

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) = HSIC_0(K, L) / sqrt(HSIC_0(K, K) HSIC_0(L, L)),

with K = X X^T, L = Y Y^T and HSIC_0(K, L) = tr(K H L H) / (n - 1)^2 (H = I - 11^T / n); it lies
in [0, 1]. The minibatch estimator (Nguyen et al. 2021) replaces HSIC_0 by the unbiased HSIC_1
of Song et al. (2012), averaged over batches of the same inputs, so n inputs never need an
n x n Gram matrix:

    CKA_minibatch = mean_k HSIC_1(K_k, L_k) / sqrt(mean_k HSIC_1(K_k, K_k) mean_k HSIC_1(L_k, L_k)).

HSIC_1 needs at least 4 inputs per batch. HSIC_1(K, K) >= 0 and, by Cauchy-Schwarz, the
minibatch CKA lies in [-1, 1]; it is 1 for representations equal up to orthogonal transform and
scale, and near 0 (it may dip slightly below) for unrelated ones.

A *constant* layer (every input gives the same features: centred, they are zero up to a relative
:data:`CONSTANT_RTOL`) has no similarity structure, and the ratio above is 0 / 0. Here, instead
of NaN: CKA(constant, constant) = 1 (both are the zero representation) and CKA(constant,
non-constant) = 0, with a :class:`~attnconv_pl.probes.DegenerateInputWarning` naming them.

Everything is computed in float64, on the inputs' device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ._checks import as_points, require_same, warn_degenerate

CONSTANT_RTOL = 1e-10
"""A layer is constant when its centred features' Frobenius norm is at most this fraction of its
features' norm: far below float32's resolution (6e-8), far above float64 centring's rounding."""

MIN_BATCH = 4
"""Inputs HSIC_1 needs per batch (its normaliser is n (n - 3))."""


def centred_features(x: Tensor, name: str = "x") -> Tensor:
    """``x`` (n, d) in float64, centred over the inputs (rows); exactly zero for a constant layer.

    Raises:
        ValueError: ``x`` is not a finite (n, d) floating tensor with n >= 2.
    """
    x = as_points(x, name, min_points=2).double()
    centred = x - x.mean(dim=0)
    if torch.linalg.matrix_norm(centred) <= CONSTANT_RTOL * torch.linalg.matrix_norm(x):
        return torch.zeros_like(x)
    return centred


def _cka_ratio(cross: Tensor, self_rows: Tensor, self_columns: Tensor) -> Tensor:
    """``cross / sqrt(self_rows self_columns^T)`` (R, C) with the constant-layer convention: 1 where
    both self terms are 0, 0 where one is."""
    both = (self_rows == 0)[:, None] & (self_columns == 0)[None, :]
    either = (self_rows == 0)[:, None] | (self_columns == 0)[None, :]
    ratio = cross / torch.where(either, 1.0, torch.sqrt(self_rows[:, None] * self_columns[None, :]))
    return torch.where(either, both.to(ratio.dtype), ratio)


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear CKA of two representations of the same n inputs (biased HSIC_0; the module docstring).

    Args:
        x: (n, d1) features, one row per input.
        y: (n, d2) features of the same inputs, in the same order.

    Returns:
        A similarity in [0, 1]; 1 when ``y`` is ``x`` up to orthogonal transform, isotropic
        scaling and translation. A constant layer gives 1 against a constant layer and 0 against
        any other (with a ``DegenerateInputWarning``).
    """
    x, y = centred_features(x, "x"), centred_features(y, "y")
    require_same(x, y, ("x", "y"), axis=0)
    if len(x) ** 2 < x.shape[1] * y.shape[1]:  # Gram form, n^2 (d1 + d2) operations
        k, l_ = x @ x.T, y @ y.T
        cross, self_x, self_y = (k * l_).sum(), torch.linalg.matrix_norm(k), torch.linalg.matrix_norm(l_)
    else:  # feature form, n d1 d2 operations
        cross = torch.linalg.matrix_norm(y.T @ x) ** 2
        self_x, self_y = torch.linalg.matrix_norm(x.T @ x), torch.linalg.matrix_norm(y.T @ y)
    _warn_constant(["x"] * bool(self_x == 0) + ["y"] * bool(self_y == 0))
    return float(_cka_ratio(cross.reshape(1, 1), (self_x**2).reshape(1), (self_y**2).reshape(1)))


def u_centred(k: Tensor) -> Tensor:
    """The U-centred form of a Gram matrix (Szekely and Rizzo 2014): zero diagonal and

        U_ij = K_ij - r_i / (n - 2) - r_j / (n - 2) + s / ((n - 1)(n - 2))   (i != j),

    with r the row sums and s the sum of K with its diagonal zeroed. Song et al.'s unbiased
    HSIC_1(K, L) equals sum(U_K * U_L) / (n (n - 3)).

    Args:
        k: (n, n) symmetric Gram matrix, n >= 4.

    Returns:
        (n, n) float64.

    Raises:
        ValueError: ``k`` is not square or n < 4.
    """
    n = _gram_size(k, "k")
    k = k.double().clone()
    k.fill_diagonal_(0)
    rows = k.sum(dim=1)
    u = k - rows[:, None] / (n - 2) - rows[None, :] / (n - 2) + rows.sum() / ((n - 1) * (n - 2))
    return u.fill_diagonal_(0)


def u_centred_gram(x: Tensor, name: str = "x") -> Tensor:
    """The U-centred linear Gram matrix (n, n) float64 of features ``x`` (n, d), n >= 4, computed
    from the centred features (HSIC_1 is translation-invariant; centring first keeps float64's
    precision for features with a large mean); zero for a constant layer."""
    x = centred_features(x, name)
    _gram_size(x, name, square=False)
    return u_centred(x @ x.T)


def unbiased_hsic(k: Tensor, l_: Tensor) -> float:
    """Song et al.'s (2012) unbiased HSIC_1 of two n x n Gram matrices of the same n >= 4 inputs:

        [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n - 1)(n - 2)) - 2 / (n - 2) 1^T K~ L~ 1] / (n (n - 3)),

    K~, L~ the matrices with zeroed diagonals. In units of the kernels' product (for linear
    kernels: features^4); computed as sum(U_K * U_L) / (n (n - 3)) (:func:`u_centred`).

    Raises:
        ValueError: not square, sizes differ, or n < 4.
    """
    n = _gram_size(k, "k")
    if tuple(l_.shape) != tuple(k.shape):
        raise ValueError(f"k has shape {tuple(k.shape)} and l has shape {tuple(l_.shape)}: they must be Gram "
                         "matrices of the same inputs")
    return float((u_centred(k) * u_centred(l_)).sum() / (n * (n - 3)))


def _gram_size(k: Tensor, name: str, square: bool = True) -> int:
    """n of an (n, n) Gram matrix (``square``) or of (n, d) features, checked to be >= 4."""
    if k.ndim != 2 or (square and k.shape[0] != k.shape[1]):
        raise ValueError(f"{name}: got shape {tuple(k.shape)}, expected an (n, n) Gram matrix")
    if k.shape[0] < MIN_BATCH:
        raise ValueError(f"{name}: {k.shape[0]} inputs, but the unbiased HSIC estimator needs at least {MIN_BATCH} "
                         "per batch; use batches of 4 or more inputs")
    return k.shape[0]


def _warn_constant(names: Sequence[str]) -> None:
    if names:
        warn_degenerate(f"constant layer(s) {', '.join(dict.fromkeys(names))}: CKA is 1 between two constant "
                        "layers and 0 between a constant and a non-constant one")


@dataclass(frozen=True)
class SimilarityMatrix:
    """CKA between named representations of the same inputs.

    Attributes:
        rows: the row representations' names.
        columns: the column representations' names.
        values: (len(rows), len(columns)) float64 CKA (a similarity: 1 = the same up to orthogonal
            transform and scale).
        constant: the names of the constant representations (see the module docstring).
    """

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    values: Tensor
    constant: tuple[str, ...]

    def __getitem__(self, names: tuple[str, str]) -> float:
        return float(self.values[self.rows.index(names[0]), self.columns.index(names[1])])


class MinibatchCKA:
    """The minibatch CKA estimator (Nguyen et al. 2021) between many representations at once.

    Feed it batches of the same inputs: per batch, ``{name: (b, d) features}`` (:meth:`update`)
    or their U-centred Gram matrices (:meth:`update_grams`, e.g. stored from an earlier epoch),
    b >= 4 (batches may differ in size; each counts once in the means). It keeps only the sums of
    HSIC_1 between every row and every column and of each one with itself: memory O((R + C) b^2)
    for one batch's Gram matrices plus O(R C), never n x n.

    Args:
        rows: names of the row representations.
        columns: names of the column representations; None: the rows against themselves (a
            symmetric matrix; :meth:`update` then takes only ``rows``).
    """

    def __init__(self, rows: Sequence[str], columns: Optional[Sequence[str]] = None) -> None:
        self.rows, self.columns = tuple(rows), None if columns is None else tuple(columns)
        width = len(self.rows) if columns is None else len(self.columns)
        self.cross = torch.zeros(len(self.rows), width, dtype=torch.float64)
        self.self_rows = torch.zeros(len(self.rows), dtype=torch.float64)
        self.self_columns = torch.zeros(width, dtype=torch.float64)
        self.batches = 0

    def update(self, rows: Mapping[str, Tensor], columns: Optional[Mapping[str, Tensor]] = None) -> None:
        """Add one batch of features: ``{name: (b, d)}`` per row (and per column), the same b inputs.

        Raises:
            ValueError: a name is missing, b < 4, or the batch sizes differ.
        """
        def grams(batch: Mapping[str, Tensor], names: tuple[str, ...]) -> dict[str, Tensor]:
            return {name: u_centred_gram(batch[name], name) for name in self._names(batch, names)}

        self.update_grams(grams(rows, self.rows), None if self.columns is None else grams(columns or {}, self.columns))

    def update_grams(self, rows: Mapping[str, Tensor], columns: Optional[Mapping[str, Tensor]] = None) -> None:
        """Add one batch as U-centred Gram matrices (:func:`u_centred_gram`), ``{name: (b, b)}``."""
        stacked_rows = self._stack(rows, self.rows)
        n = int(round(stacked_rows.shape[1] ** 0.5))
        if self.columns is None:
            cross = stacked_rows @ stacked_rows.T
            self_rows = self_columns = cross.diagonal()
        else:
            stacked_columns = self._stack(columns or {}, self.columns).to(stacked_rows.device)
            if stacked_columns.shape[1] != stacked_rows.shape[1]:
                raise ValueError(f"row Grams are {n} x {n} but column Grams {stacked_columns.shape[1]} elements: a "
                                 "batch's rows and columns must be the same inputs")
            cross = stacked_rows @ stacked_columns.T
            self_rows, self_columns = (stacked_rows**2).sum(dim=1), (stacked_columns**2).sum(dim=1)
        scale = n * (n - 3)
        self.cross += (cross / scale).cpu()
        self.self_rows += (self_rows / scale).cpu()
        self.self_columns += (self_columns / scale).cpu()
        self.batches += 1

    def compute(self) -> SimilarityMatrix:
        """The CKA matrix of the batches so far; warns (``DegenerateInputWarning``) naming the
        constant representations.

        Raises:
            ValueError: no batch was added.
        """
        if self.batches == 0:
            raise ValueError("no batch was added: call update() with at least one batch before compute()")
        columns = self.rows if self.columns is None else self.columns
        constant = [name for name, hsic in zip(self.rows, self.self_rows) if hsic == 0]
        constant += [name for name, hsic in zip(columns, self.self_columns) if hsic == 0]
        _warn_constant(constant)
        values = _cka_ratio(self.cross, self.self_rows, self.self_columns)
        return SimilarityMatrix(self.rows, columns, values, tuple(dict.fromkeys(constant)))

    @staticmethod
    def _names(batch: Mapping[str, Tensor], names: tuple[str, ...]) -> tuple[str, ...]:
        missing = [name for name in names if name not in batch]
        if missing:
            raise ValueError(f"the batch has no {', '.join(missing)}; every batch must hold each of {', '.join(names)}")
        return names

    def _stack(self, grams: Mapping[str, Tensor], names: tuple[str, ...]) -> Tensor:
        """The Gram matrices of ``names`` as rows of one (len(names), b^2) float64 matrix."""
        sizes = {name: tuple(grams[name].shape) for name in self._names(grams, names)}
        if len(set(sizes.values())) > 1:
            raise ValueError("the batch's Gram matrices differ in size (" + ", ".join(
                f"{name}: {size}" for name, size in sizes.items()) + "): a batch holds the same inputs for every name")
        for name in names:
            _gram_size(grams[name], name)
        return torch.stack([grams[name].double().reshape(-1) for name in names])
