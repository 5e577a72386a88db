"""The duality gap: never negative, and its spectral norms exact or matrix-free alike."""

import pytest
import torch

from attnconv_pl.heads import certify, create_head, dual_value, lifted_blocks, lifted_predict, spectral_norms

CONVEX = [("linear_attention", {}), ("gated_relu_attention", {"gates": 3}), ("mixer", {"gates": 2}), ("fno", {})]


@pytest.mark.parametrize("name, options", CONVEX)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_gap_of_any_head_is_nonnegative(name, options, seed, small_instance):
    tokens, targets = small_instance
    torch.manual_seed(seed)
    head = create_head(name, 4, 3, 4, heads=2, **options).double()
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.mul_(10.0 ** (seed - 1))  # small, unit and large weights
    result = certify(head, tokens, targets, beta=1e-3)
    assert result.duality_gap >= 0
    assert result.objective == pytest.approx(result.data_loss + result.regulariser)
    assert result.dual <= result.objective


@pytest.mark.parametrize("name, options", CONVEX)
def test_power_iteration_agrees_with_the_dense_norm(name, options, small_instance):
    tokens, targets = small_instance
    torch.manual_seed(0)
    head = create_head(name, 4, 3, 4, heads=2, **options).double()
    lifting = head.lifting(tokens)
    with torch.no_grad():
        V = (targets - head(tokens)) / len(targets)
    dense = spectral_norms(lifting, V)
    matrix_free = spectral_norms(lifting, V, dense_limit=0)
    assert torch.allclose(matrix_free, dense, rtol=1e-6)


def test_a_zero_residual_has_a_zero_dual(small_instance):
    tokens, targets = small_instance
    head = create_head("linear_attention", 4, 3, 4).double()
    lifting = head.lifting(tokens)
    assert dual_value(lifting, targets, targets, beta=1e-3) == 0.0


def test_the_certificate_needs_a_convex_head(small_instance):
    tokens, targets = small_instance
    with pytest.raises(TypeError, match="no convex form"):
        certify(create_head("mlp", 4, 3, 4).double(), tokens, targets, beta=1e-3)


def test_lifted_and_head_objectives_agree(small_instance):
    """The head's data loss is that of its lifted blocks (the certificate reads the head)."""
    tokens, targets = small_instance
    head = create_head("gated_relu_attention", 4, 3, 4, gates=2).double()
    with torch.no_grad():
        lifted = lifted_predict(head.lifting(tokens), lifted_blocks(*head.factors()))
    result = certify(head, tokens, targets, beta=1e-3)
    assert result.data_loss == pytest.approx(0.5 * float((lifted - targets).pow(2).sum(dim=1).mean()))
