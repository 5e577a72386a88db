"""noise_accuracy against the closed form of a 1-D threshold classifier, its contract, and the
analysis giving its numbers as run-level values."""

import math
from contextlib import contextmanager

import pytest
import torch
from scipy.stats import norm
from torch import nn

from attnconv_pl.analyses import metric_family
from attnconv_pl.analyses.base import CheckpointInputs, LabelledInputs
from attnconv_pl.analyses.robustness import (
    DEFAULT_NOISE_LEVELS,
    Robustness,
    RobustnessSettings,
    check_noise_levels,
    noise_accuracy,
)


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


def test_a_checkpoint_gives_one_run_level_value_per_level_equal_to_noise_accuracy():
    model = small_net()
    generator = torch.Generator().manual_seed(4)
    images, labels = torch.randn(90, 3, 4, 4, generator=generator), torch.randint(0, 5, (90,), generator=generator)
    drawn = LabelledInputs(images, labels, torch.arange(90), "tensors", "val", own_data=True)
    checkpoint = CheckpointInputs(epoch=3, model=model, device=torch.device("cpu"), autocast=None, seed=5,
                                  batch_size=32, max_epochs=None, inputs=lambda split, size: drawn)
    levels = (0.0, 0.1, 0.25, 1.0)
    result = Robustness(RobustnessSettings(noise_levels=levels, size=90)).probe_checkpoint(checkpoint)
    expected = noise_accuracy(model, images, labels, levels, seed=5, batch_size=32)
    assert result.values == {("", "noise_accuracy_0"): expected[0], ("", "noise_accuracy_0.1"): expected[1],
                             ("", "noise_accuracy_0.25"): expected[2], ("", "noise_accuracy_1"): expected[3]}
    assert result.rows()[0] == (3, "", "noise_accuracy_0", expected[0])
    assert result.artifacts == {"noise_levels": list(levels),
                                "inputs": {"dataset": "tensors", "split": "val", "inputs": 90, "seed": 5}}


@pytest.mark.parametrize("metric", ["noise_accuracy_0", "noise_accuracy_0.1", "fgsm_accuracy_0.03",
                                    "pgd_accuracy_0.03"])
def test_accuracies_under_perturbation_are_one_family(metric):
    assert metric_family(metric).key == "robustness"


def test_levels_with_the_same_metric_name_are_refused():
    with pytest.raises(ValueError, match="0.1 and 0.1000001 are both noise_accuracy_0.1"):
        check_noise_levels([0.1, 0.1000001])
