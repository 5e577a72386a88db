"""noise_accuracy against the closed form of a 1-D threshold classifier, and its contract."""

import math
from contextlib import contextmanager

import pytest
import torch
from scipy.stats import norm
from torch import nn

from attnconv_pl.analyses.robustness import DEFAULT_NOISE_LEVELS, check_noise_levels, noise_accuracy


def threshold_classifier():
    """Logits (-x, x) of a scalar input x: class 1 exactly when x > 0."""
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-1.0], [1.0]]))
    return model


@pytest.mark.parametrize("a", [0.5, 1.0])
def test_accuracy_under_noise_is_phi_of_margin_over_sigma(a):
    n = 40_000
    labels = torch.arange(n) % 2
    images = (2.0 * labels - 1.0).float().unsqueeze(1) * a  # +a for class 1, -a for class 0
    sigmas = [0.0, 0.25, 0.5, 1.0, 2.0, 4.0]
    measured = noise_accuracy(threshold_classifier(), images, labels, sigmas, seed=3, batch_size=999)
    assert measured[0] == 1.0
    for sigma, accuracy in zip(sigmas[1:], measured[1:]):
        expected = norm.cdf(a / sigma)  # P(a + sigma * eps > 0)
        tolerance = 4 * math.sqrt(expected * (1 - expected) / n) + 1e-12
        assert accuracy == pytest.approx(expected, abs=tolerance), sigma


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 5))


def test_sigma_zero_is_the_clean_accuracy_in_eval_mode_and_the_mode_is_restored():
    model = small_net().train()
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(300, 3, 4, 4, generator=generator)
    labels = torch.randint(0, 5, (300,), generator=generator)
    (clean,) = noise_accuracy(model, images, labels, [0.0], batch_size=64)
    assert model.training
    model.eval()
    expected = (model(images).argmax(dim=1) == labels).double().mean().item()
    assert 0.05 < expected < 0.95, "the test needs a model that is neither always right nor always wrong"
    assert clean == expected


def test_the_seed_fixes_the_noise_and_every_level_shares_one_draw():
    model = small_net()
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(500, 3, 4, 4, generator=generator)
    labels = model.eval()(images).argmax(dim=1)  # clean accuracy 1
    first = noise_accuracy(model, images, labels, [0.5, 2.0], seed=7)
    assert noise_accuracy(model, images, labels, [0.5, 2.0], seed=7) == first
    assert noise_accuracy(model, images, labels, [2.0, 0.5], seed=7) == first[::-1]
    assert noise_accuracy(model, images, labels, [0.5, 2.0], seed=8) != first
    assert 1.0 > first[0] > first[1]


def test_forward_passes_run_under_the_given_autocast():
    entered = []

    @contextmanager
    def recording():
        entered.append(torch.is_grad_enabled())
        yield

    images, labels = torch.randn(10, 1), torch.zeros(10, dtype=torch.int64)
    noise_accuracy(threshold_classifier(), images, labels, [0.0, 1.0], batch_size=4, autocast=recording)
    assert entered == [False] * 6  # 3 batches x 2 levels, no gradients


@pytest.mark.parametrize("sigmas, message", [([-0.1], "-0.1"), ([float("nan")], "nan"), ([], "at least one")])
def test_bad_noise_levels_are_refused(sigmas, message):
    with pytest.raises(ValueError, match=message):
        noise_accuracy(threshold_classifier(), torch.ones(4, 1), torch.ones(4, dtype=torch.int64), sigmas)


def test_noise_levels_are_sorted_and_distinct():
    assert check_noise_levels([0.5, 0, 0.5, 0.1]) == (0.0, 0.1, 0.5)
    assert check_noise_levels(DEFAULT_NOISE_LEVELS) == DEFAULT_NOISE_LEVELS
