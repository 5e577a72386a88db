"""Token-token matrices of attention heads reproduce the head's predictions, and their
clustering recovers planted token groups."""

import numpy as np
import pytest
import torch

from attnconv_pl.heads import create_head
from attnconv_pl.heads.lifted import hyperplane_gates
from attnconv_pl.heads.tokens import token_clusters, token_token_matrices


@pytest.mark.parametrize("head, options", [("linear_attention", {}), ("gated_relu_attention", {"gates": 3})])
def test_token_token_matrices_give_the_heads_predictions(head, options):
    """y_hat = (1/s^2) sum_bj g_b^T (X A_bj X^T) X B_bj (g_b = 1 without gates)."""
    torch.manual_seed(0)
    module = create_head(head, dim=5, num_classes=3, tokens=6, heads=4, **options).double()
    tokens = torch.randn(7, 6, 5, dtype=torch.float64)
    matrices = token_token_matrices(module, tokens)
    assert matrices.shape == (7, max(options.get("gates", 1), 1), 4, 6, 6)
    gates = (torch.ones(7, 6, 1, dtype=torch.float64) if module.directions is None
             else hyperplane_gates(tokens, module.directions))
    predicted = torch.einsum("nsb,nbjst,ntd,bjdc->nc", gates, matrices, tokens, module.B) / 6**2
    torch.testing.assert_close(predicted, module(tokens).detach())


def test_token_token_matrix_is_x_a_xt():
    torch.manual_seed(1)
    module = create_head("linear_attention", dim=4, num_classes=2, tokens=5, heads=2).double()
    tokens = torch.randn(3, 5, 4, dtype=torch.float64)
    matrices = token_token_matrices(module, tokens)
    torch.testing.assert_close(matrices[2, 0, 1], tokens[2] @ module.A[0, 1] @ tokens[2].T)


def test_other_heads_are_refused():
    with pytest.raises(TypeError, match="linear attention"):
        token_token_matrices(create_head("mlp", dim=4, num_classes=2, tokens=5), torch.randn(1, 5, 4))


def test_clusters_recover_planted_groups():
    """Tokens 0, 2, 4 similar to each other and 1, 3, 5 to each other (block affinity plus noise)."""
    groups = np.array([0, 1, 0, 1, 0, 1])
    planted = torch.tensor((groups[:, None] == groups[None, :]).astype(float))
    noise = 0.05 * torch.rand(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert token_clusters(planted + noise - 0.5 * torch.eye(6), clusters=2).tolist() == groups.tolist()


def test_clusters_reject_bad_shapes():
    with pytest.raises(ValueError, match="clusters"):
        token_clusters(torch.eye(4), clusters=4)
