"""The lifted forms against the heads' forward passes and against the formulas written out."""

import pytest
import torch

from attnconv_pl.heads import (
    adjoint_matvec,
    adjoint_rmatvec,
    block_singular_values,
    create_head,
    gate_directions,
    lifted_adjoint,
    lifted_blocks,
    lifted_predict,
    weight_decay,
)
from attnconv_pl.heads.modules import circular_convolution

CONVEX = [("linear_attention", {}), ("gated_relu_attention", {"gates": 3}), ("mixer", {"gates": 2}), ("fno", {})]


def random_head(name: str, options: dict, dim: int = 4, num_classes: int = 3, tokens: int = 6, heads: int = 3):
    torch.manual_seed(1)
    return create_head(name, dim, num_classes, tokens, heads=heads, **options).double()


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randn(7, 6, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


@pytest.mark.parametrize("name, options", CONVEX)
def test_the_lifted_prediction_is_the_forward_pass(name, options, tokens):
    head = random_head(name, options)
    with torch.no_grad():
        lifted = lifted_predict(head.lifting(tokens), lifted_blocks(*head.factors()))
        assert torch.allclose(lifted, head(tokens), atol=1e-12)


@pytest.mark.parametrize("name, options", CONVEX)
def test_the_adjoint_and_its_matrix_free_products(name, options, tokens):
    lifting = random_head(name, options).lifting(tokens)
    generator = torch.Generator().manual_seed(3)
    V = torch.randn(len(tokens), 3, generator=generator, dtype=torch.float64)
    W = lifted_adjoint(lifting, V)
    Z = torch.randn(W.shape, generator=generator, dtype=W.dtype)
    # <V, L(Z)> = Re <L^*(V), Z>
    assert torch.allclose((V * lifted_predict(lifting, Z)).sum(), (W.conj() * Z).sum().real, atol=1e-10)
    x = torch.randn(W.shape[0], W.shape[2], generator=generator, dtype=W.dtype)
    u = torch.randn(W.shape[0], W.shape[1], generator=generator, dtype=W.dtype)
    assert torch.allclose(adjoint_matvec(lifting, V, x), torch.einsum("bpq,bq->bp", W, x), atol=1e-10)
    assert torch.allclose(adjoint_rmatvec(lifting, V, u), torch.einsum("bpq,bp->bq", W.conj(), u), atol=1e-10)


@pytest.mark.parametrize("name, options", CONVEX)
def test_block_singular_values_from_the_factors(name, options):
    head = random_head(name, options, heads=5)
    with torch.no_grad():
        left, right = head.factors()
        expected = torch.linalg.svdvals(lifted_blocks(left, right))
        assert torch.allclose(block_singular_values(left, right), expected[:, :min(5, *expected.shape[1:])],
                              atol=1e-10)


def test_the_weight_decay_is_that_of_the_factors():
    """(1/2) sum ||theta||^2 = (1/2) sum (|left|^2 + |right|^2): the bound on sum ||Z_b||_* is the head's own."""
    for name, options in CONVEX:
        head = random_head(name, options)
        left, right = head.factors()
        assert torch.allclose(weight_decay(head), 0.5 * (left.abs().pow(2).sum() + right.abs().pow(2).sum()))


def test_attention_heads_follow_their_formula(tokens):
    """y_hat = sum_b sum_j x_b^T A_bj G B_bj, x_b = X^T 1[X u_b >= 0] / s, G = X^T X / s, one input at a time."""
    for head in (random_head("linear_attention", {}), random_head("gated_relu_attention", {"gates": 3})):
        directions = head.directions
        for X, prediction in zip(tokens, head(tokens)):
            s = len(X)
            gates = torch.ones(s, 1, dtype=X.dtype) if directions is None else (X @ directions >= 0).double()
            expected = sum(X.T @ gates[:, b] / s @ head.A[b, j] @ (X.T @ X / s) @ head.B[b, j]
                           for b in range(head.A.shape[0]) for j in range(head.A.shape[1]))
            assert torch.allclose(prediction, expected, atol=1e-12)


def test_the_mixer_follows_its_formula(tokens):
    """y_hat = sum_{b,j} sum_k 1[X[:, k]^T u_b >= 0] (a_bj^T X[:, k]) B_bj[k], one input at a time."""
    head = random_head("mixer", {"gates": 2})
    for X, prediction in zip(tokens, head(tokens)):
        expected = sum(float(X[:, k] @ head.directions[:, b] >= 0) * (head.a[b, j] @ X[:, k]) * head.B[b, j, k]
                       for b in range(2) for j in range(3) for k in range(X.shape[1]))
        assert torch.allclose(prediction, expected, atol=1e-12)


@pytest.mark.parametrize("length", [5, 6])
def test_fno_fft_form_is_its_circulant_matrix_form(length):
    generator = torch.Generator().manual_seed(4)
    signals = torch.randn(3, length, 4, generator=generator, dtype=torch.float64)
    kernels = torch.randn(2, length, 4, generator=generator, dtype=torch.float64)
    index = (torch.arange(length)[:, None] - torch.arange(length)[None, :]) % length
    circulant = kernels[:, index, :]  # (m, t, t', k) = kernels[j, (t - t') mod s, k]
    expected = torch.einsum("jtuk,nuk->njt", circulant, signals)
    assert torch.allclose(circular_convolution(signals, kernels), expected, atol=1e-12)


def test_fno_head_is_its_readout_of_circulant_convolutions(tokens):
    head = random_head("fno", {})
    s = tokens.shape[1]
    index = (torch.arange(s)[:, None] - torch.arange(s)[None, :]) % s
    hidden = torch.einsum("jtuk,nuk->njt", head.K[:, index, :], tokens)
    with torch.no_grad():
        assert torch.allclose(head(tokens), torch.einsum("njt,jtc->nc", hidden, head.R), atol=1e-12)


def test_gates_are_fixed_by_their_seed():
    assert torch.equal(gate_directions(5, 3, seed=7), gate_directions(5, 3, seed=7))
    assert not torch.equal(gate_directions(5, 3, seed=7), gate_directions(5, 3, seed=8))
    first = create_head("gated_relu_attention", 4, 3, 6, gates=3, gate_seed=7)
    torch.manual_seed(123)
    second = create_head("gated_relu_attention", 4, 3, 6, gates=3, gate_seed=7)
    assert torch.equal(first.directions, second.directions)
