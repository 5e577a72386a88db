"""Robustness: a classifier's accuracy under additive Gaussian noise on its inputs (arXiv 2412.18288).

For each noise level sigma the model classifies ``x + sigma * eps`` with ``eps ~ N(0, I)`` of the
input's shape; inputs are the data module's *normalised* tensors, so sigma is in units of the
normalised input (one per-channel standard deviation of the dataset). The same seeded draw
``eps`` serves every sigma (and every model given the same inputs and seed): differences between
levels and between models are not differences between noise draws, and sigma = 0 is exactly the
clean accuracy. torch is imported when first needed, so ``probe.py`` checks its options without it.
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


def noise_metric(sigma: float) -> str:
    """The ``dynamics.csv`` metric of the accuracy under noise level ``sigma``: ``noise_accuracy_<sigma:g>``
    (``noise_accuracy_0``, ``noise_accuracy_0.1``)."""
    return f"noise_accuracy_{sigma:g}"


def check_noise_levels(sigmas: Sequence[float]) -> tuple[float, ...]:
    """The noise levels as sorted distinct floats.

    Raises:
        ValueError: none given, one is negative or not finite, or two share their metric name
            (:func:`noise_metric`: they agree to 6 significant digits).
    """
    levels = [float(sigma) for sigma in sigmas]
    if not levels:
        raise ValueError("give at least one noise level (a standard deviation >= 0, e.g. 0 0.1 0.5)")
    bad = [sigma for sigma in levels if not math.isfinite(sigma) or sigma < 0]
    if bad:
        raise ValueError(f"noise levels are standard deviations: finite and >= 0, got {bad[0]}")
    levels = sorted(set(levels))
    names = [noise_metric(sigma) for sigma in levels]
    clash = next((index for index in range(1, len(names)) if names[index] == names[index - 1]), None)
    if clash is not None:
        raise ValueError(f"noise levels {levels[clash - 1]!r} and {levels[clash]!r} are both {names[clash]}: "
                         "give levels that differ within 6 significant digits")
    return tuple(levels)


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
    """

    noise_levels: tuple[float, ...] = DEFAULT_NOISE_LEVELS
    size: int = 1000
    split: Literal["train", "val", "test"] = "val"

    def __post_init__(self) -> None:
        object.__setattr__(self, "noise_levels", check_noise_levels(self.noise_levels))
        check_field_types(self)
        if self.size < 2:
            raise ValueError(f"{self.size} inputs: give at least 2 (default {RobustnessSettings.size})")


class Robustness(Analysis):
    """Accuracy of a checkpoint's model under Gaussian input noise, per noise level.

    Its numbers are run-level values (layer ``""``), one per level: ``noise_accuracy_<sigma>``
    (:func:`noise_metric`), the fraction of inputs classified correctly; its artifact
    ``noise_levels`` lists the levels in order, and offline ``inputs`` says which inputs.
    """

    name = "robustness"
    settings_type = RobustnessSettings
    families = (MetricFamily("robustness", "Robustness: accuracy under Gaussian input noise",
                             r"(noise|fgsm|pgd)\w*_accuracy_.+"),)

    def run(self, epoch: int, model: nn.Module, images: Tensor, labels: Tensor, *, seed: int, batch_size: int = 256,
            device: Optional[torch.device] = None,
            autocast: Optional[Callable[[], AbstractContextManager]] = None) -> AnalysisResult:
        """``model``'s accuracy on ``images`` (N, ...) with labels (N,) under every noise level;
        noise drawn by ``seed`` (see :func:`noise_accuracy`)."""
        levels = self.settings.noise_levels
        accuracy = noise_accuracy(model, images, labels, levels, seed=seed, batch_size=batch_size, device=device,
                                  autocast=autocast)
        values = {("", noise_metric(sigma)): value for sigma, value in zip(levels, accuracy)}
        return AnalysisResult(epoch, values=values, artifacts={"noise_levels": list(levels)})

    def probe_checkpoint(self, checkpoint: CheckpointInputs) -> AnalysisResult:
        """:meth:`run` on ``settings.size`` inputs of ``settings.split`` drawn by the run's probe
        seed (which also draws the noise); the artifact ``inputs`` says which inputs."""
        inputs = checkpoint.inputs(self.settings.split, self.settings.size)
        result = self.run(checkpoint.epoch, checkpoint.model, inputs.images, inputs.labels, seed=checkpoint.seed,
                          batch_size=checkpoint.batch_size, device=checkpoint.device, autocast=checkpoint.autocast)
        result.artifacts["inputs"] = {"dataset": inputs.dataset, "split": inputs.split, "inputs": len(inputs.indices),
                                      "seed": checkpoint.seed}
        return result
