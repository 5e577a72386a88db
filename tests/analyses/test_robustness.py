"""noise_accuracy against the closed form of a 1-D threshold classifier, its contract, and the
analysis giving its numbers (under noise and under adversarial attack) as run-level values."""

import math
import re
from contextlib import contextmanager

import pytest
import torch
from scipy.stats import norm
from torch import nn

from attnconv_pl.analyses import metric_family
from attnconv_pl.analyses.base import CheckpointInputs, LabelledInputs
from attnconv_pl.analyses.robustness import (
    DEFAULT_EPS_GRIDS,
    DEFAULT_NOISE_LEVELS,
    Robustness,
    RobustnessSettings,
    check_noise_levels,
    noise_accuracy,
)
from attnconv_pl.probes.attacks import Attack, adversarial_accuracy


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


def checkpoint_of(model, n=90, seed=5, batch_size=32):
    """A checkpoint of ``model`` at epoch 3 whose inputs are n random images (3, 4, 4) of 5 classes."""
    generator = torch.Generator().manual_seed(4)
    images, labels = torch.randn(n, 3, 4, 4, generator=generator), torch.randint(0, 5, (n,), generator=generator)
    drawn = LabelledInputs(images, labels, torch.arange(n), "tensors", "val", own_data=True)
    return CheckpointInputs(epoch=3, model=model, device=torch.device("cpu"), autocast=None, seed=seed,
                            batch_size=batch_size, max_epochs=None, inputs=lambda split, size: drawn)


def test_a_checkpoint_gives_one_run_level_value_per_level_equal_to_noise_accuracy():
    model = small_net()
    checkpoint = checkpoint_of(model)
    images, labels = checkpoint.inputs("val", 90).images, checkpoint.inputs("val", 90).labels
    levels = (0.0, 0.1, 0.25, 1.0)
    result = Robustness(RobustnessSettings(noise_levels=levels, size=90, attacks=())).probe_checkpoint(checkpoint)
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


@pytest.mark.parametrize("norm, grid", [("linf", (0.0, 0.1, 0.4)), ("l2", (0.0, 0.5, 2.0))])
def test_attacks_give_one_run_level_value_per_radius_equal_to_adversarial_accuracy(norm, grid):
    model = small_net()
    checkpoint = checkpoint_of(model)
    images, labels = checkpoint.inputs("val", 90).images, checkpoint.inputs("val", 90).labels
    settings = RobustnessSettings(noise_levels=(0.0, 0.5), size=90, attacks=("fgsm", "pgd"), norm=norm,
                                  eps_grid=grid[::-1], pgd_steps=3, pgd_step_factor=2.0)
    result = Robustness(settings).probe_checkpoint(checkpoint)
    fgsm = adversarial_accuracy(model, images, labels, Attack("fgsm", norm), grid, batch_size=32, seed=5)
    pgd = adversarial_accuracy(model, images, labels, Attack("pgd", norm, steps=3, step_factor=2.0), grid,
                               batch_size=32, seed=5)
    noise = noise_accuracy(model, images, labels, (0.0, 0.5), seed=5, batch_size=32)
    names = [f"{eps:g}" for eps in grid]
    assert result.values == {("", "noise_accuracy_0"): noise[0], ("", "noise_accuracy_0.5"): noise[1],
                             **{("", f"fgsm_{norm}_accuracy_{name}"): value for name, value in zip(names, fgsm)},
                             **{("", f"pgd_{norm}_accuracy_{name}"): value for name, value in zip(names, pgd)}}
    assert fgsm[0] == pgd[0] == noise[0] > pgd[-1], "eps 0 is the clean accuracy, and the largest radius must bite"
    assert {metric_family(metric).key for _, metric in result.values} == {"robustness"}
    assert result.artifacts["attacks"] == {"methods": ["fgsm", "pgd"], "norm": norm, "eps_grid": list(grid),
                                           "pgd_steps": 3, "pgd_step_factor": 2.0, "random_start": True}


def test_attacks_leave_the_model_as_it_was():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(64, 5)).train()
    model[1].running_mean.uniform_(-1, 1)  # statistics a forward pass in train mode would move
    model[1].weight.requires_grad_(False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    settings = RobustnessSettings(noise_levels=(0.0,), size=90, attacks=("fgsm", "pgd"), pgd_steps=2)
    result = Robustness(settings).probe_checkpoint(checkpoint_of(model))
    assert ("", "pgd_linf_accuracy_0.1") in result.values  # the attacks ran
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], value) and after[name].dtype == value.dtype for name, value in before.items())
    assert all(parameter.grad is None for parameter in model.parameters())
    assert [parameter.requires_grad for parameter in model.parameters()] == [True, True, False, True, True, True]
    assert all(module.training for module in model.modules())


def test_attack_radii_default_per_norm_and_come_sorted_and_distinct():
    assert RobustnessSettings().attacks == () and RobustnessSettings().attack_grid == DEFAULT_EPS_GRIDS["linf"]
    assert RobustnessSettings(norm="l2").attack_grid == DEFAULT_EPS_GRIDS["l2"]
    settings = RobustnessSettings(attacks=["pgd", "fgsm", "pgd"], eps_grid=[0.5, 0, 0.5])
    assert (settings.attacks, settings.attack_grid) == (("pgd", "fgsm"), (0.0, 0.5))
    assert RobustnessSettings(attacks="fgsm").attacks == ("fgsm",)


@pytest.mark.parametrize("fields, message", [
    ({"attacks": ("fgsm", "cw")}, "unknown attack 'cw'; give a list of fgsm, pgd"),
    ({"eps_grid": (0.1, -0.05)}, "eps_grid radii must be finite and >= 0, got -0.05"),
    ({"eps_grid": ()}, "eps_grid radii: give at least one"),
    ({"eps_grid": (0.1, 0.1000001)}, "0.1 and 0.1000001 are both pgd_linf_accuracy_0.1"),
    ({"norm": "l1"}, "norm must be one of linf, l2, got 'l1'"),
    ({"pgd_steps": 0}, "pgd_steps must be >= 1, got 0"),
    ({"pgd_step_factor": 0.0}, "pgd_step_factor must be a finite number > 0"),
])
def test_bad_attack_settings_are_refused_with_what_to_give(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RobustnessSettings(**fields)
