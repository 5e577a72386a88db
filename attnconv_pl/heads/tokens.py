"""What an attention head does with the tokens of one input: its token-token matrices and the
clustering of tokens they induce (the paper's interpretability claim, arXiv 2205.08078).

A (gated) linear attention unit predicts x_b^T A_bj G B_bj with G = X^T X / s and
x_b = X^T g_b / s (:mod:`.lifted`), which is

    (1 / s^2) g_b^T (X A_bj X^T) X B_bj,

so the unit mixes tokens through the s x s matrix M_bj = X A_bj X^T: token t receives
sum_u M_bj[t, u] x_u. The head's token-token matrix is sum_bj M_bj; tokens that it makes
strongly similar (large |M + M^T| / 2) form groups, found by spectral clustering
(scikit-learn) of that affinity.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import SpectralClustering
from torch import Tensor

from .modules import BilinearAttentionHead


def token_token_matrices(head: BilinearAttentionHead, tokens: Tensor) -> Tensor:
    """M_bj = X A_bj X^T of every input, gate block b and unit j.

    Args:
        head: a (gated) linear attention head (``linear_attention``, ``gated_relu_attention``).
        tokens: X, (n, s, d), in the head's dtype.

    Returns:
        (n, P, m, s, s): P gate blocks (1 without gates), m units per block.
    """
    if not isinstance(head, BilinearAttentionHead):
        raise TypeError(f"token-token matrices need a linear attention head, got {type(head).__name__}")
    with torch.no_grad():
        return torch.einsum("nsd,bjde,nte->nbjst", tokens, head.A, tokens)


def token_clusters(matrix: Tensor, clusters: int, seed: int = 0) -> np.ndarray:
    """Groups of tokens by spectral clustering of the affinity |M + M^T| / 2.

    Args:
        matrix: one input's token-token matrix M, (s, s) (e.g. summed over the head's units).
        clusters: the number of groups k (< s).
        seed: seed of the clustering's k-means step.

    Returns:
        (s,) integer labels in [0, k), relabelled in order of first appearance (token 0 is in group 0).
    """
    s = matrix.shape[-1]
    if matrix.shape != (s, s) or not 1 <= clusters < s:
        raise ValueError(f"need one (s, s) matrix and 1 <= clusters < s; got shape {tuple(matrix.shape)}, "
                         f"clusters={clusters}")
    affinity = (matrix + matrix.T).abs().double().cpu().numpy() / 2
    labels = SpectralClustering(clusters, affinity="precomputed", random_state=seed).fit_predict(affinity)
    order = {label: rank for rank, label in enumerate(dict.fromkeys(labels))}
    return np.array([order[label] for label in labels])
