import copy

import pytest
import torch
from torch import nn

from attnconv_pl.probes.attacks import Attack, adversarial_accuracy, fgsm, image_bounds, pgd

DUAL = {"linf": 1, "l2": 2}
"""The norm of a weight difference that the worst change of an input's norm meets (Hoelder)."""


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def linear_two_class(d: int = 5, n: int = 200, seed: int = 0):
    """A float64 linear model with two classes, points (n, d) and labels that it gets partly wrong."""
    g = generator(seed)
    model = nn.Linear(d, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(2, d, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64))
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    logits = model(x).detach()
    labels = torch.where(torch.rand(n, generator=g) < 0.85, logits.argmax(1), logits.argmin(1))
    return model, x, labels


def margins(model: nn.Linear, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logit of the true class minus the other's, by the definition."""
    logits = x @ model.weight.detach().T + model.bias.detach()
    return logits.gather(1, labels[:, None])[:, 0] - logits.gather(1, 1 - labels[:, None])[:, 0]


def weight_gap(model: nn.Linear, labels: torch.Tensor, norm: str) -> torch.Tensor:
    """||w_y - w_j|| in the dual norm, per input."""
    w = model.weight.detach()
    return torch.linalg.vector_norm(w[labels] - w[1 - labels], ord=DUAL[norm], dim=1)


@pytest.fixture(scope="module")
def mlp():
    """A small float64 MLP trained on three Gaussian blobs in 8 dimensions, with its points."""
    g = generator(1)
    centres = 1.5 * torch.randn(3, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(150) % 3
    x = centres[labels] + torch.randn(150, 8, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 3)).double()
    for _ in range(200):  # full-batch gradient descent (torch.optim's first step imports for seconds)
        grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), labels), list(model.parameters()))
        with torch.no_grad():
            for parameter, grad in zip(model.parameters(), grads):
                parameter -= 0.5 * grad
    return model.eval(), x, labels


def assert_equal_up_to_rounding(ours: torch.Tensor, reference: torch.Tensor) -> None:
    # torch.testing.assert_close would import torch.distributed (seconds) on first use
    assert ours.shape == reference.shape and (ours - reference).abs().max() <= 1e-12


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_lowers_a_two_class_linear_margin_by_eps_times_the_dual_norm_of_the_weight_gap(norm):
    model, x, labels = linear_two_class()
    adversarial = fgsm(model, x, labels, 0.3, norm)
    expected = margins(model, x, labels) - 0.3 * weight_gap(model, labels, norm)
    assert_equal_up_to_rounding(margins(model, adversarial, labels), expected)


@pytest.mark.parametrize("attack", [Attack("fgsm", "linf"), Attack("fgsm", "l2"), Attack("pgd", "linf"),
                                    Attack("pgd", "l2", random_start=False)], ids=repr)
def test_accuracy_of_a_two_class_linear_model_is_the_fraction_of_margins_beyond_eps_times_the_dual_norm(attack):
    # the smallest change that flips a point of margin m > 0 has norm m / ||w_y - w_j||_dual: a
    # point survives eps exactly when m > eps ||w_y - w_j||_dual, and these attacks find the change
    model, x, labels = linear_two_class()
    grid = [0.0, 0.05, 0.2, 0.5, 1.0]
    thresholds = torch.tensor(grid, dtype=torch.float64)[:, None] * weight_gap(model, labels, attack.norm)
    gaps = (margins(model, x, labels) - thresholds).abs()
    assert gaps.min() > 1e-6  # no point on the fence, where rounding would decide
    expected = (margins(model, x, labels) > thresholds).double().mean(1).tolist()
    assert adversarial_accuracy(model, x, labels, attack, grid, batch_size=64) == expected
    assert expected[0] > expected[-1] > 0  # the attack has work to do and points to fail at


def test_one_pgd_step_of_size_eps_from_the_inputs_is_fgsm(mlp):
    model, x, labels = mlp
    for norm in ("linf", "l2"):
        once = pgd(model, x, labels, 0.4, norm, steps=1, step_size=0.4, random_start=False)
        assert torch.equal(once, fgsm(model, x, labels, 0.4, norm))


@pytest.mark.parametrize("norm, grid", [("linf", [0.25, 0.5, 0.8]), ("l2", [0.8, 2.5, 4.0])])
def test_pgd_is_at_least_as_strong_as_fgsm_and_stays_in_the_eps_ball(mlp, norm, grid):
    # an empirical property, not a theorem: from the inputs PGD does at least as well as FGSM at
    # every eps here; from a random start a point that FGSM only just flips may escape, so PGD is
    # stronger on the whole grid, not at every eps
    model, x, labels = mlp
    fgsm_accuracy = adversarial_accuracy(model, x, labels, Attack("fgsm", norm), grid)
    from_inputs = adversarial_accuracy(model, x, labels, Attack("pgd", norm, steps=20, random_start=False), grid)
    random_start = adversarial_accuracy(model, x, labels, Attack("pgd", norm, steps=20), grid)
    assert all(ours <= fast for ours, fast in zip(from_inputs, fgsm_accuracy))
    assert from_inputs[-1] < fgsm_accuracy[-1] and sum(random_start) < sum(fgsm_accuracy)
    for eps in grid:
        change = pgd(model, x, labels, eps, norm, steps=20, generator=generator(0)) - x
        sizes = change.abs().amax(1) if norm == "linf" else torch.linalg.vector_norm(change, dim=1)
        assert sizes.max() <= eps + 1e-6
        assert sizes.max() >= eps - 1e-6  # the budget is used


@pytest.mark.parametrize("norm, inside_half", [("linf", 0.5), ("l2", 1 / 8)])
def test_the_random_start_is_uniform_in_the_eps_ball(norm, inside_half):
    # one step of size 0 returns the random start; in the 3-ball a uniform point lies within half
    # the radius with probability 1/8, in the cube each entry with probability 1/2
    model, x = nn.Linear(3, 2).double(), torch.zeros(4000, 3, dtype=torch.float64)
    start = pgd(model, x, torch.zeros(4000, dtype=torch.int64), 2.0, norm, steps=1, step_size=0.0,
                generator=generator(3))
    sizes = start.abs() if norm == "linf" else torch.linalg.vector_norm(start, dim=1)
    assert sizes.max() <= 2.0
    assert float((sizes < 1.0).double().mean()) == pytest.approx(inside_half, abs=0.02)
    assert start.mean(0).abs().max() < 0.1


def test_random_starts_are_seeded_and_radii_do_not_disturb_each_other(mlp):
    model, x, labels = mlp
    attack = Attack("pgd", "l2", steps=3)
    start = {seed: pgd(model, x, labels, 0.5, "l2", steps=3, generator=generator(seed)) for seed in (0, 0, 1)}
    assert torch.equal(pgd(model, x, labels, 0.5, "l2", steps=3, generator=generator(0)), start[0])
    assert not torch.allclose(start[0], start[1])
    both = adversarial_accuracy(model, x, labels, attack, [0.5, 1.5], batch_size=50, seed=4)
    assert both == adversarial_accuracy(model, x, labels, attack, [0.5, 1.5], batch_size=50, seed=4)
    assert both[1] == adversarial_accuracy(model, x, labels, attack, [1.5], batch_size=50, seed=4)[0]


def test_eps_zero_is_the_clean_accuracy_exactly(mlp):
    model, x, labels = mlp
    clean = float((model(x).argmax(1) == labels).double().mean())
    for attack in (Attack("fgsm"), Attack("pgd", "l2")):
        assert adversarial_accuracy(model, x, labels, attack, [0.0, 0.3])[0] == clean
    assert torch.equal(pgd(model, x, labels, 0.0), x)


class ModeRecorder(nn.Module):
    """Records, at each forward pass, whether it was in training mode."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(self.training)
        return x


def hygiene_model() -> nn.Module:
    """A conv net with BatchNorm and dropout in train mode, one frozen parameter, one submodule
    in eval mode and one parameter whose .grad is set."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), ModeRecorder(), nn.ReLU(), nn.Dropout(0.5),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model.train()
    model[0].bias.requires_grad_(False)
    model[4].eval()
    model[6].weight.grad = torch.ones_like(model[6].weight)
    model[1](torch.randn(16, 4, 6, 6))  # running statistics that are not the initial ones
    return model


@pytest.mark.parametrize("caller", [torch.enable_grad, torch.no_grad, torch.inference_mode])
def test_the_model_is_attacked_in_eval_mode_and_left_exactly_as_it_was(caller):
    model = hygiene_model()
    state = copy.deepcopy(model.state_dict())
    modes = [module.training for module in model.modules()]
    flags = [parameter.requires_grad for parameter in model.parameters()]
    grads = [None if parameter.grad is None else parameter.grad.clone() for parameter in model.parameters()]
    images, labels = torch.randn(20, 1, 8, 8, generator=generator(2)), torch.arange(20) % 3
    kept = images.clone()
    with caller():
        accuracies = adversarial_accuracy(model, images, labels, Attack("pgd", steps=3), [0.0, 0.5], batch_size=8)
        adversarial = pgd(model, images, labels, 0.5, "l2", steps=2, generator=generator(0))
    assert len(accuracies) == 2 and adversarial.shape == images.shape and not adversarial.requires_grad
    assert model[2].seen and not any(model[2].seen)
    assert [module.training for module in model.modules()] == modes
    assert [parameter.requires_grad for parameter in model.parameters()] == flags
    for parameter, grad in zip(model.parameters(), grads):
        assert (parameter.grad is None) if grad is None else torch.equal(parameter.grad, grad)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(value, model.state_dict()[key]) for key, value in state.items())
    assert torch.equal(images, kept) and images.grad is None


def test_mixed_precision_forward_passes_keep_the_inputs_dtype():
    model = hygiene_model().float()
    images, labels = torch.randn(6, 1, 8, 8, generator=generator(5)), torch.arange(6) % 3
    adversarial = fgsm(model, images, labels, 0.1, autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    assert adversarial.dtype == torch.float32
    assert (adversarial - images).abs().max() <= 0.1 + 1e-6


def test_image_bounds_are_the_pixel_box_in_normalised_units_and_keep_attacked_images_in_it(mlp):
    low, high = image_bounds([0.5, 0.25], [0.25, 0.5])
    assert low.flatten().tolist() == [-2.0, -0.5] and high.flatten().tolist() == [2.0, 1.5]
    assert low.shape == (2, 1, 1)
    model, x, labels = mlp
    bounds = (torch.full((8,), -0.5), torch.full((8,), 0.5))
    adversarial = pgd(model, x.clamp(-0.5, 0.5), labels, 1.0, "linf", generator=generator(0), bounds=bounds)
    assert adversarial.min() >= -0.5 and adversarial.max() <= 0.5
    assert adversarial.min() == -0.5 and adversarial.max() == 0.5  # the box is active, not avoided


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: fgsm(m, x, y, -0.1), r"eps: got -0.1, expected a finite radius >= 0"),
    (lambda m, x, y: pgd(m, x, y, 0.1, "l1"), r"norm: got 'l1', expected one of \('linf', 'l2'\)"),
    (lambda m, x, y: pgd(m, x, y[:-1], 0.1), r"one label per image.*\(150, 8\).*\(149,\)"),
    (lambda m, x, y: pgd(m, x, y, 0.1, steps=0), r"steps: got 0, expected at least 1"),
    (lambda m, x, y: adversarial_accuracy(m, x, y, Attack(), []), r"eps_grid: give at least one radius"),
    (lambda m, x, y: Attack(method="cw"), r"method: got 'cw', expected 'fgsm' or 'pgd'"),
])
def test_bad_input_says_what_was_wrong(mlp, call, message):
    with pytest.raises(ValueError, match=message):
        call(*mlp)


def foolbox_model(model, bounds=(-1e6, 1e6)):
    foolbox = pytest.importorskip("foolbox")
    return foolbox, foolbox.PyTorchModel(copy.deepcopy(model), bounds=bounds)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fgsm_and_pgd_from_the_inputs_match_foolbox(mlp, norm):
    # the reference runs the same iteration (x + step * direction, projected, clipped to its
    # bounds); here its bounds are far away, so nothing is clipped
    model, x, labels = mlp
    foolbox, reference = foolbox_model(model)
    attacks = foolbox.attacks
    fast = attacks.LinfFastGradientAttack() if norm == "linf" else attacks.L2FastGradientAttack()
    assert_equal_up_to_rounding(fgsm(model, x, labels, 0.3, norm), fast.run(reference, x, labels, epsilon=0.3))
    iterated = (attacks.LinfPGD if norm == "linf" else attacks.L2PGD)(abs_stepsize=0.07, steps=7, random_start=False)
    assert_equal_up_to_rounding(pgd(model, x, labels, 0.3, norm, steps=7, step_size=0.07, random_start=False),
                                iterated.run(reference, x, labels, epsilon=0.3))


def test_pgd_in_a_box_matches_foolbox_on_images_in_that_box(mlp):
    model, x, labels = mlp
    x = torch.sigmoid(x)  # inside [0, 1], like the reference's images
    foolbox, reference = foolbox_model(model, bounds=(0, 1))
    bounds = (torch.zeros(8), torch.ones(8))
    ours = pgd(model, x, labels, 0.2, "linf", steps=5, step_size=0.05, random_start=False, bounds=bounds)
    theirs = foolbox.attacks.LinfPGD(abs_stepsize=0.05, steps=5, random_start=False).run(reference, x, labels,
                                                                                         epsilon=0.2)
    assert_equal_up_to_rounding(ours, theirs)
    assert (ours == 1).any() or (ours == 0).any()  # the box was met
