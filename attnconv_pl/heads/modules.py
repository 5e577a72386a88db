"""The heads: tokens (B, s, d) in, logits (B, c) out.

Baselines on mean-pooled tokens (``linear``, ``mlp``), a softmax self-attention head
(``attention``), and the convex-capable heads, each a sum of m bilinear units per block whose
lifted form is in :mod:`attnconv_pl.heads.lifted`:

- ``linear_attention``: y_hat = sum_j xbar^T A_j G B_j, xbar = X^T 1 / s, G = X^T X / s,
  A_j (d, d), B_j (d, c). It is the ``attention`` head with softmax(X A X^T / sqrt(d)) replaced
  by X A X^T / s, mean-pooled over query tokens: (1/s) 1^T (X A X^T / s) X B = xbar^T A G B.
  Z = sum_j vec(A_j) vec(B_j)^T (d^2 x dc, row-major vec).
- ``gated_relu_attention``: y_hat = sum_b sum_j x_b^T A_bj G B_bj with the gated means
  x_b = X^T 1[X u_b >= 0] / s: gate b keeps the query tokens on the positive side of a fixed
  random hyperplane u_b in R^d (N(0, I), seeded by ``gate_seed``), as a gated ReLU unit keeps
  the inputs on one side of its fixed gate vector (our choice of gate: the paper's exact
  gated-ReLU attention was not available); m units per gate, Z_b = sum_j vec(A_bj) vec(B_bj)^T.
- ``mixer``: a gated-ReLU token-mixing MLP; unit j of gate b mixes the tokens of every channel
  k with a_bj in R^s, keeps the channels where the fixed random gate 1[X[:, k]^T u_b >= 0]
  (u_b in R^s) is open, and reads channel k out with B_bj[k] in R^c:
  y_hat = sum_{b,j} sum_k 1[X[:, k]^T u_b >= 0] (a_bj^T X[:, k]) B_bj[k]. Z_b = sum_j a_bj vec(B_bj)^T
  is s x dc: low rank in the token dimension, one nuclear norm per gate.
- ``fno``: unit j convolves the tokens circularly with kernels K_j (s, d), one per input channel,
  into one channel H_j = sum_k K_j[:, k] (*) X[:, k] (s,) (computed by FFT), read out by R_j (s, c):
  y_hat = sum_j R_j^T H_j. By Parseval, y_hat = Re sum_f X_hat[f]^T Z_f with
  Z_f = (w_f / s) sum_j K_hat_j[f] conj(R_hat_j[f])^T (d, c), hats the real FFT over tokens,
  w_f = 1 at f = 0 and s/2, 2 otherwise; the weight decay is sum_f (w_f / 2s) sum_j
  (|K_hat_j[f]|^2 + |R_hat_j[f]|^2), so its convex form has one nuclear norm per frequency.

Every head's regulariser is the weight decay (1/2) sum of squared parameters
(:func:`attnconv_pl.heads.objective.weight_decay`); for the convex-capable heads it bounds
sum_b ||Z_b||_* from above, tightly at the best factorisation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._checks import check_count
from .lifted import Lifting, attention_lifting, fno_lifting, gate_directions, mixer_lifting
from .registry import register_head

DEFAULT_HEADS = 8
"""Units (heads) per block of the convex-capable heads and heads of ``attention`` (our choice)."""
DEFAULT_GATES = 4
"""Random gates of ``gated_relu_attention`` and ``mixer`` (our choice)."""
UNITS = "units per block"


def _normal(*shape: int, std: float) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * std)


class LinearHead(nn.Module):
    """Logits = W mean_t(X) + bias."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.linear(tokens.mean(dim=1))


class MLPHead(nn.Module):
    """Two-layer ReLU network on the mean token: W2 relu(W1 mean_t(X) + b1) + b2."""

    def __init__(self, dim: int, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens.mean(dim=1))


class SoftmaxAttentionHead(nn.Module):
    """y_hat = sum_j (1/s) 1^T softmax(X A_j X^T / sqrt(d)) X B_j: m softmax self-attention heads
    (query-key product A_j (d, d), value-output B_j (d, c)), mean-pooled over query tokens."""

    def __init__(self, dim: int, num_classes: int, heads: int) -> None:
        super().__init__()
        self.A = _normal(heads, dim, dim, std=dim**-0.5)
        self.B = _normal(heads, dim, num_classes, std=dim**-0.5)

    def forward(self, tokens: Tensor) -> Tensor:
        scores = torch.einsum("nsd,jde,nte->njst", tokens, self.A, tokens) / math.sqrt(tokens.shape[-1])
        pooled = (scores.softmax(dim=-1) @ tokens.unsqueeze(1)).mean(dim=2)  # (n, m, d)
        return torch.einsum("njd,jdc->nc", pooled, self.B)


class BilinearAttentionHead(nn.Module):
    """(Gated) linear attention: y_hat = sum_b sum_j x_b^T A_bj G B_bj (see the module docstring).

    Args:
        dim, num_classes: d and c.
        heads: m, units per gate.
        gates: P random gates on tokens; 0 for none (linear attention, one block).
        gate_seed: seed of the gate directions (:func:`~attnconv_pl.heads.lifted.gate_directions`).
    """

    def __init__(self, dim: int, num_classes: int, heads: int, gates: int = 0, gate_seed: int = 0) -> None:
        super().__init__()
        blocks = max(gates, 1)
        self.A = _normal(blocks, heads, dim, dim, std=dim**-0.5)
        self.B = _normal(blocks, heads, dim, num_classes, std=dim**-0.5)
        self.register_buffer("directions", gate_directions(dim, gates, gate_seed) if gates else None)
        self.max_rank = min(dim * dim, dim * num_classes)

    def lifting(self, tokens: Tensor) -> Lifting:
        return attention_lifting(tokens, self.B.shape[-1], self.directions)

    def factors(self) -> tuple[Tensor, Tensor]:
        """vec(A_bj) (P, m, d^2) and vec(B_bj) (P, m, dc), row-major."""
        blocks, heads = self.A.shape[:2]
        return self.A.reshape(blocks, heads, -1), self.B.reshape(blocks, heads, -1)

    def forward(self, tokens: Tensor) -> Tensor:
        lifting = self.lifting(tokens)
        queries = torch.einsum("nbd,bjde->nbje", lifting.left.squeeze(-1), self.A)
        return torch.einsum("nbje,nef,bjfc->nc", queries, lifting.right, self.B)


class MixerHead(nn.Module):
    """Gated-ReLU token-mixing MLP (see the module docstring).

    Args:
        dim, num_classes, tokens: d, c and s.
        heads: m, token-mixing units per gate.
        gates: P >= 1 random channel gates, directions in R^s.
        gate_seed: seed of the gate directions.
    """

    def __init__(self, dim: int, num_classes: int, tokens: int, heads: int, gates: int, gate_seed: int = 0) -> None:
        super().__init__()
        self.a = _normal(gates, heads, tokens, std=tokens**-0.5)
        self.B = _normal(gates, heads, dim, num_classes, std=dim**-0.5)
        self.register_buffer("directions", gate_directions(tokens, gates, gate_seed))
        self.max_rank = min(tokens, dim * num_classes)

    def lifting(self, tokens: Tensor) -> Lifting:
        return mixer_lifting(tokens, self.B.shape[-1], self.directions)

    def factors(self) -> tuple[Tensor, Tensor]:
        """a_bj (P, m, s) and vec(B_bj) (P, m, dc), row-major."""
        blocks, heads = self.a.shape[:2]
        return self.a, self.B.reshape(blocks, heads, -1)

    def forward(self, tokens: Tensor) -> Tensor:
        mixed = torch.einsum("nbtk,bjt->nbjk", self.lifting(tokens).left, self.a)
        return torch.einsum("nbjk,bjkc->nc", mixed, self.B)


def rfft_weights(length: int) -> Tensor:
    """w_f (length // 2 + 1,): how often frequency f of a real FFT stands in the full spectrum
    (1 at f = 0 and, for even ``length``, at the Nyquist frequency; 2 otherwise)."""
    weights = torch.full((length // 2 + 1,), 2.0, dtype=torch.float64)
    weights[0] = 1.0
    if length % 2 == 0:
        weights[-1] = 1.0
    return weights


def circular_convolution(signals: Tensor, kernels: Tensor) -> Tensor:
    """sum_k kernels[j, :, k] (*) signals[n, :, k], circular over tokens, by FFT:
    signals (n, s, d), kernels (m, s, d) -> (n, m, s). Entry t is
    sum_k sum_t' kernels[j, (t - t') mod s, k] signals[n, t', k]."""
    length = signals.shape[1]
    product = torch.einsum("nfk,jfk->njf", torch.fft.rfft(signals, dim=1), torch.fft.rfft(kernels, dim=1))
    return torch.fft.irfft(product, n=length, dim=-1)


class FNOHead(nn.Module):
    """Spectral (FNO) head: y_hat = sum_j R_j^T (sum_k K_j[:, k] (*) X[:, k]) (see the module docstring).

    Args:
        dim, num_classes, tokens: d, c and s.
        heads: m, hidden channels.
    """

    def __init__(self, dim: int, num_classes: int, tokens: int, heads: int) -> None:
        super().__init__()
        self.K = _normal(heads, tokens, dim, std=(tokens * dim) ** -0.5)
        self.R = _normal(heads, tokens, num_classes, std=tokens**-0.5)
        self.max_rank = min(dim, num_classes)

    def lifting(self, tokens: Tensor) -> Lifting:
        return fno_lifting(tokens, self.R.shape[-1])

    def factors(self) -> tuple[Tensor, Tensor]:
        """sqrt(w_f / s) K_hat_j[f] (F, m, d) and sqrt(w_f / s) R_hat_j[f] (F, m, c), complex."""
        length = self.K.shape[1]
        scale = (rfft_weights(length).to(self.K) / length).sqrt()[:, None, None]
        spectra = (torch.fft.rfft(weights, dim=1).transpose(0, 1) for weights in (self.K, self.R))
        return tuple(scale * spectrum for spectrum in spectra)

    def forward(self, tokens: Tensor) -> Tensor:
        return torch.einsum("njt,jtc->nc", circular_convolution(tokens, self.K), self.R)


@register_head
def linear(dim: int, num_classes: int, tokens: int) -> nn.Module:
    """Linear classifier on the mean token (a baseline)."""
    return LinearHead(dim, num_classes)


@register_head
def mlp(dim: int, num_classes: int, tokens: int, hidden: int = 256) -> nn.Module:
    """Two-layer ReLU MLP with ``hidden`` units on the mean token (a baseline)."""
    check_count("mlp: hidden", hidden, meaning="hidden units")
    return MLPHead(dim, num_classes, hidden)


@register_head
def attention(dim: int, num_classes: int, tokens: int, heads: int = DEFAULT_HEADS) -> nn.Module:
    """``heads`` softmax self-attention heads, mean-pooled (the non-convex baseline)."""
    check_count("attention: heads", heads, meaning="attention heads")
    return SoftmaxAttentionHead(dim, num_classes, heads)


@register_head
def linear_attention(dim: int, num_classes: int, tokens: int, heads: int = DEFAULT_HEADS) -> nn.Module:
    """``heads`` softmax-free attention heads; convex form: one d^2 x dc nuclear-norm block."""
    check_count("linear_attention: heads", heads, meaning=UNITS)
    return BilinearAttentionHead(dim, num_classes, heads)


@register_head
def gated_relu_attention(dim: int, num_classes: int, tokens: int, heads: int = DEFAULT_HEADS,
                         gates: int = DEFAULT_GATES, gate_seed: int = 0) -> nn.Module:
    """``heads`` attention units per each of ``gates`` random token gates; one block per gate."""
    check_count("gated_relu_attention: heads", heads, meaning=UNITS)
    check_count("gated_relu_attention: gates", gates, meaning="random token gates; linear_attention has none")
    check_count("gated_relu_attention: gate_seed", gate_seed, minimum=0, meaning="seed of the gates")
    return BilinearAttentionHead(dim, num_classes, heads, gates, gate_seed)


@register_head
def mixer(dim: int, num_classes: int, tokens: int, heads: int = DEFAULT_HEADS, gates: int = DEFAULT_GATES,
          gate_seed: int = 0) -> nn.Module:
    """Gated-ReLU token-mixing MLP; convex form: one s x dc nuclear-norm block per gate."""
    check_count("mixer: heads", heads, meaning=UNITS)
    check_count("mixer: gates", gates, meaning="random channel gates")
    check_count("mixer: gate_seed", gate_seed, minimum=0, meaning="seed of the gates")
    return MixerHead(dim, num_classes, tokens, heads, gates, gate_seed)


@register_head
def fno(dim: int, num_classes: int, tokens: int, heads: int = DEFAULT_HEADS) -> nn.Module:
    """Circular token convolution by FFT into ``heads`` channels; one d x c block per frequency."""
    check_count("fno: heads", heads, meaning="hidden channels, the units of each frequency block")
    return FNOHead(dim, num_classes, tokens, heads)

