"""Instances the head tests share."""

import pytest
import torch
from sklearn.datasets import load_digits

from attnconv_pl.heads import one_hot


def digits(side: int, n: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` bundled digits of classes < ``num_classes``, average-pooled to side x side
    pixels in [0, 1], as tokens (n, side, side) (row t = token t) and one-hot targets (n, c), float64."""
    bunch = load_digits()
    images = torch.tensor(bunch.images / 16.0)
    labels = torch.tensor(bunch.target)
    keep = labels < num_classes
    pool = 8 // side
    tokens = images[keep][:n].reshape(-1, side, pool, side, pool).mean(dim=(2, 4))
    return tokens, one_hot(labels[keep][:n], num_classes, torch.float64)


@pytest.fixture(scope="session")
def small_instance() -> tuple[torch.Tensor, torch.Tensor]:
    """60 digits of classes 0-2 as 4 tokens of 4 pixels (2x2-pooled rows): CVXPY solves it in < 1 s."""
    return digits(4, 60, 3)


@pytest.fixture(scope="session")
def digit_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """300 digits as 8 row tokens of 8 pixels, 10 classes (d = 8, c = 10)."""
    return digits(8, 300, 10)
