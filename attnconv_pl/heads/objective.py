"""The training objective of the heads: squared loss on one-hot targets plus weight decay.

    objective = (1/2n) sum_i ||y_hat_i - y_i||^2 + (beta/2) sum_theta ||theta||^2

(``data_loss`` and ``regulariser``). For the convex-capable heads the weight decay is the
(beta/2) sum_j (||A_j||^2 + ||B_j||^2) of their units.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """One-hot targets (n, c) of integer ``labels`` (n,)."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).to(dtype)


def squared_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """(1/2n) sum_i ||predictions_i - targets_i||^2 of (n, c) tensors, a scalar; integer
    ``targets`` (n,) are read as labels and made one-hot."""
    if targets.ndim == 1:
        targets = one_hot(targets, predictions.shape[-1], predictions.dtype)
    return 0.5 * (predictions - targets).pow(2).sum(dim=-1).mean()


def weight_decay(head: nn.Module) -> Tensor:
    """(1/2) sum of the squared parameters of ``head`` (multiply by beta for the regulariser)."""
    return 0.5 * sum(parameter.pow(2).sum() for parameter in head.parameters())
