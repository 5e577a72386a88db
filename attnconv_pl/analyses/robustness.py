"""Robustness: a classifier's accuracy under additive Gaussian noise on its inputs (arXiv 2412.18288).

For each noise level sigma the model classifies ``x + sigma * eps`` with ``eps ~ N(0, I)`` of the
input's shape; inputs are the data module's *normalised* tensors, so sigma is in units of the
normalised input (one per-channel standard deviation of the dataset). The same seeded draw
``eps`` serves every sigma (and every model given the same inputs and seed): differences between
levels and between models are not differences between noise draws, and sigma = 0 is exactly the
clean accuracy.

With ``attacks`` set (``fgsm``, ``pgd``) it also measures the accuracy under adversarial attack
(:mod:`attnconv_pl.probes.attacks`) at each radius of ``eps_grid``, on the same inputs: radii are
in the same *normalised* units as sigma (a pixel-unit radius is ``eps / std`` of the dataset; the
analysis is not told the data's normalisation, so it neither converts nor clamps to the pixel box).
The model is attacked in eval mode and left as it was (weights, BatchNorm statistics, no ``.grad``).
torch is imported when first needed, so ``probe.py`` checks its options without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Optional

from attnconv_pl.analyses.base import Analysis, AnalysisResult, CheckpointInputs, MetricFamily, check_field_types

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

DEFAULT_NOISE_LEVELS = (0.0, 0.1, 0.25, 0.5, 1.0)
"""Noise standard deviations, in units of the normalised input (**our choice**)."""

ATTACKS = ("fgsm", "pgd")
"""The attacks ``RobustnessSettings.attacks`` may name (:mod:`attnconv_pl.probes.attacks`)."""

DEFAULT_EPS_GRIDS = {"linf": (0.0, 0.0125, 0.025, 0.05, 0.1), "l2": (0.0, 0.25, 0.5, 1.0, 2.0)}
"""Attack radii per norm, in units of the normalised input (**our choice**): with digits' std,
0.319, the L_inf grid is about {0, 1, 2, 4, 8}/255 in pixel units (pixels in [0, 1]; with
CIFAR-10's, about 0.25, {0, 0.8, 1.6, 3.2, 6.4}/255) and the L_2 grid about {0, 0.08, 0.16, 0.32,
0.64} (an image's whole change)."""


def noise_metric(sigma: float) -> str:
    """The ``dynamics.csv`` metric of the accuracy under noise level ``sigma``: ``noise_accuracy_<sigma:g>``
    (``noise_accuracy_0``, ``noise_accuracy_0.1``)."""
    return f"noise_accuracy_{sigma:g}"


def attack_metric(attack: str, norm: str, eps: float) -> str:
    """The ``dynamics.csv`` metric of the accuracy under ``attack`` of radius ``eps`` in ``norm``:
    ``<attack>_<norm>_accuracy_<eps:g>`` (``fgsm_linf_accuracy_0.025``, ``pgd_l2_accuracy_0.5``)."""
    return f"{attack}_{norm}_accuracy_{eps:g}"


def _sorted_distinct(values: Sequence[float], what: str, metric: Callable[[float], str], example: str) -> tuple[
        float, ...]:
    """``values`` as sorted distinct floats, each finite and >= 0 with its own ``metric`` name.

    Raises:
        ValueError: none given, one is negative or not finite, or two share their metric name
            (they agree to 6 significant digits).
    """
    levels = [float(value) for value in values]
    if not levels:
        raise ValueError(f"{what}: give at least one ({example})")
    bad = [value for value in levels if not math.isfinite(value) or value < 0]
    if bad:
        raise ValueError(f"{what} must be finite and >= 0, got {bad[0]} ({example})")
    levels = sorted(set(levels))
    names = [metric(value) for value in levels]
    clash = next((index for index in range(1, len(names)) if names[index] == names[index - 1]), None)
    if clash is not None:
        raise ValueError(f"{what} {levels[clash - 1]!r} and {levels[clash]!r} are both {names[clash]}: "
                         "give values that differ within 6 significant digits")
    return tuple(levels)


def check_noise_levels(sigmas: Sequence[float]) -> tuple[float, ...]:
    """The noise levels as sorted distinct floats.

    Raises:
        ValueError: none given, one is negative or not finite, or two share their metric name
            (:func:`noise_metric`: they agree to 6 significant digits).
    """
    return _sorted_distinct(sigmas, "noise levels", noise_metric, "a standard deviation >= 0, e.g. 0 0.1 0.5")


def check_eps_grid(radii: Sequence[float], norm: str = "linf") -> tuple[float, ...]:
    """The attack radii as sorted distinct floats.

    Raises:
        ValueError: none given, one is negative or not finite, or two share their metric name
            (:func:`attack_metric`: they agree to 6 significant digits).
    """
    return _sorted_distinct(radii, "eps_grid radii", lambda eps: attack_metric("pgd", norm, eps),
                            "a radius >= 0 in normalised input units, e.g. [0, 0.025, 0.05]")


def check_attacks(attacks: str | Sequence[str]) -> tuple[str, ...]:
    """The attack names as a tuple, in the order given, without repeats (one name alone is one attack).

    Raises:
        ValueError: a name that is not one of :data:`ATTACKS`.
    """
    names = (attacks,) if isinstance(attacks, str) else tuple(attacks)
    unknown = [name for name in names if name not in ATTACKS]
    if unknown:
        raise ValueError(f"attacks: unknown attack {unknown[0]!r}; give a list of {', '.join(ATTACKS)}, "
                         "e.g. '[fgsm, pgd]' (or [] for none)")
    return tuple(dict.fromkeys(names))


def noise_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    sigmas: Sequence[float],
    *,
    seed: int = 0,
    batch_size: int = 256,
    device: Optional[torch.device] = None,
    autocast: Optional[Callable[[], AbstractContextManager]] = None,
) -> list[float]:
    """Top-1 accuracy of ``model`` on ``images + sigma * eps`` for each sigma in ``sigmas``.

    Args:
        model: maps a batch (B, ...) to logits (B, num_classes); evaluated in eval mode (its
            mode is restored afterwards), without gradients.
        images: inputs (N, ...), float, on any device.
        labels: class indices (N,).
        sigmas: noise standard deviations (>= 0), in units of ``images``.
        seed: seed of ``eps``; drawn on the CPU batch by batch, so the draw depends on
            ``seed`` and ``batch_size`` only, not on ``device``.
        batch_size: inputs per forward pass.
        device: where the model runs (default: the device of its first parameter).
        autocast: a context manager factory (e.g. the run's mixed precision) to run the
            forward passes under; None for plain float32.

    Returns:
        The fraction of inputs classified correctly (argmax of the logits equals the label),
        one per sigma, in the order given.

    Raises:
        ValueError: a sigma is negative or not finite, no inputs, or images and labels differ
            in length.
    """
    import torch

    check_noise_levels(sigmas)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"need as many labels as images (at least one), got {len(images)} images "
                         f"and {len(labels)} labels")
    device = device or next(model.parameters()).device
    context = autocast or nullcontext
    generator = torch.Generator().manual_seed(seed)
    correct = torch.zeros(len(sigmas), dtype=torch.int64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size]
                noise = torch.randn(batch.shape, generator=generator, dtype=batch.dtype).to(device, non_blocking=True)
                batch = batch.to(device, non_blocking=True)
                targets = labels[start:start + batch_size].to(device, non_blocking=True)
                for index, sigma in enumerate(sigmas):
                    with context():
                        logits = model(batch + sigma * noise)
                    correct[index] += (logits.argmax(dim=1) == targets).sum()
    finally:
        model.train(was_training)
    return (correct.double() / len(images)).tolist()


@dataclass(frozen=True)
class RobustnessSettings:
    """What the robustness analysis measures; the single source of ``probe.py``'s defaults.

    Args:
        noise_levels: noise standard deviations, in units of the normalised input (sorted,
            distinct, >= 0 once built).
        size: inputs of the evaluation (all of the split when it is smaller), at least 2.
        split: split of the run's own dataset the inputs are drawn from (by the probe seed).
        attacks: adversarial attacks to measure accuracy under, on the same inputs: ``fgsm``,
            ``pgd`` or both (``[fgsm, pgd]``); default none.
        norm: the attacks' norm: ``linf`` (largest change of one input entry) or ``l2``
            (Euclidean norm of an input's whole change).
        eps_grid: attack radii in NORMALISED input units (a pixel-unit radius divided by the
            data's std: 8/255 pixel is 0.098 on digits, std 0.319), sorted, distinct, >= 0;
            default (None): L_inf 0 0.0125 0.025 0.05 0.1, L_2 0 0.25 0.5 1 2 (our choice).
        pgd_steps: PGD's iterations.
        pgd_step_factor: PGD's step size is ``pgd_step_factor * eps / pgd_steps``.
        random_start: PGD starts from a uniform random point of the eps ball (seeded).
    """

    noise_levels: tuple[float, ...] = DEFAULT_NOISE_LEVELS
    size: int = 1000
    split: Literal["train", "val", "test"] = "val"
    attacks: tuple[str, ...] = ()
    norm: Literal["linf", "l2"] = "linf"
    eps_grid: Optional[tuple[float, ...]] = None
    pgd_steps: int = 10
    pgd_step_factor: float = 2.5
    random_start: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_levels", check_noise_levels(self.noise_levels))
        object.__setattr__(self, "attacks", check_attacks(self.attacks))
        check_field_types(self)
        if self.eps_grid is not None:
            object.__setattr__(self, "eps_grid", check_eps_grid(self.eps_grid, self.norm))
        if self.size < 2:
            raise ValueError(f"{self.size} inputs: give at least 2 (default {RobustnessSettings.size})")
        if self.pgd_steps < 1:
            raise ValueError(f"pgd_steps must be >= 1, got {self.pgd_steps}")
        if not math.isfinite(self.pgd_step_factor) or self.pgd_step_factor <= 0:
            raise ValueError(f"pgd_step_factor must be a finite number > 0 (step size = pgd_step_factor * eps / "
                             f"pgd_steps), got {self.pgd_step_factor}")

    @property
    def attack_grid(self) -> tuple[float, ...]:
        """The radii the attacks are run at: ``eps_grid``, or the norm's :data:`DEFAULT_EPS_GRIDS`."""
        return DEFAULT_EPS_GRIDS[self.norm] if self.eps_grid is None else self.eps_grid


class Robustness(Analysis):
    """Accuracy of a checkpoint's model under Gaussian input noise, per noise level, and under
    adversarial attack, per attack and radius.

    Its numbers are run-level values (layer ``""``), one per level: ``noise_accuracy_<sigma>``
    (:func:`noise_metric`), the fraction of inputs classified correctly, and with ``attacks`` one
    per attack and radius: ``<attack>_<norm>_accuracy_<eps>`` (:func:`attack_metric`). Its
    artifact ``noise_levels`` lists the levels in order, ``attacks`` (only with attacks) says
    which attacks at which radii (``methods``, ``norm``, ``eps_grid``, ``pgd_steps``,
    ``pgd_step_factor``, ``random_start``), and offline ``inputs`` says which inputs.
    """

    name = "robustness"
    settings_type = RobustnessSettings
    families = (MetricFamily("robustness", "Robustness: accuracy under input noise and adversarial attack",
                             r"(noise|fgsm|pgd)\w*_accuracy_.+"),)

    def run(self, epoch: int, model: nn.Module, images: Tensor, labels: Tensor, *, seed: int, batch_size: int = 256,
            device: Optional[torch.device] = None,
            autocast: Optional[Callable[[], AbstractContextManager]] = None) -> AnalysisResult:
        """``model``'s accuracy on ``images`` (N, ...) with labels (N,) under every noise level
        and every attack at every radius; noise and random starts drawn by ``seed`` (see
        :func:`noise_accuracy` and :func:`~attnconv_pl.probes.attacks.adversarial_accuracy`)."""
        settings = self.settings
        levels = settings.noise_levels
        accuracy = noise_accuracy(model, images, labels, levels, seed=seed, batch_size=batch_size, device=device,
                                  autocast=autocast)
        values = {("", noise_metric(sigma)): value for sigma, value in zip(levels, accuracy)}
        artifacts: dict[str, object] = {"noise_levels": list(levels)}
        if settings.attacks:
            from attnconv_pl.probes.attacks import Attack, adversarial_accuracy

            grid = settings.attack_grid
            for method in settings.attacks:
                attack = Attack(method, settings.norm, steps=settings.pgd_steps, step_factor=settings.pgd_step_factor,
                                random_start=settings.random_start)
                accuracy = adversarial_accuracy(model, images, labels, attack, grid, batch_size=batch_size,
                                                device=device, autocast=autocast, seed=seed)
                values |= {("", attack_metric(method, settings.norm, eps)): value for eps, value in zip(grid, accuracy)}
            artifacts["attacks"] = {"methods": list(settings.attacks), "norm": settings.norm, "eps_grid": list(grid),
                                    "pgd_steps": settings.pgd_steps, "pgd_step_factor": settings.pgd_step_factor,
                                    "random_start": settings.random_start}
        return AnalysisResult(epoch, values=values, artifacts=artifacts)

    def probe_checkpoint(self, checkpoint: CheckpointInputs) -> AnalysisResult:
        """:meth:`run` on ``settings.size`` inputs of ``settings.split`` drawn by the run's probe
        seed (which also draws the noise and the attacks' random starts); the artifact ``inputs``
        says which inputs."""
        inputs = checkpoint.inputs(self.settings.split, self.settings.size)
        result = self.run(checkpoint.epoch, checkpoint.model, inputs.images, inputs.labels, seed=checkpoint.seed,
                          batch_size=checkpoint.batch_size, device=checkpoint.device, autocast=checkpoint.autocast)
        result.artifacts["inputs"] = {"dataset": inputs.dataset, "split": inputs.split, "inputs": len(inputs.indices),
                                      "seed": checkpoint.seed}
        return result
