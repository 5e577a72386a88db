"""Adversarial attacks on a classifier's inputs: FGSM and PGD under the L_inf and L_2 norms.

Pure functions: a model, a batch and a budget in; adversarial inputs (or accuracies) out.

**Epsilon units.** A budget ``eps`` is measured in the units of the tensors the model takes,
which in this project are *normalised* images ``(pixel - mean) / std`` per channel. An eps in
pixel units (pixels in [0, 1], e.g. 8/255) is ``eps / std`` in these units; when the channels'
stds differ, a pixel-unit L_inf ball is a box of half-widths ``eps / std_c``, and an L_inf eps
here is one half-width for every channel. L_inf is the largest absolute change of any entry;
L_2 is the Euclidean norm of an input's whole change (all of its entries flattened), per input.

**No image box by default.** The attacked inputs are not clamped: normalised inputs have no
natural box. Pass ``bounds`` (see :func:`image_bounds`) to keep every attacked input a valid
image, as libraries that attack [0, 1] pixels do.

**The model is left as it was.** During an attack the model is in eval mode (every submodule's
mode is restored afterwards, so BatchNorm statistics never move), its parameters do not require
gradients (their flags are restored), and gradients are taken with respect to the inputs only
(``torch.autograd.grad``), so no parameter's ``.grad`` is created or changed. Gradients are
enabled internally, so callers under ``torch.no_grad()`` or ``torch.inference_mode()`` work.
The modes and flags are changed for the attack's duration: attack a copy of a model that another
thread is training.

The loss is the cross-entropy of the logits, summed over the batch (each input's gradient is its
own loss's gradient). A step moves along the gradient's sign (L_inf) or along the gradient
divided by its L_2 norm, floored at :data:`NORM_FLOOR` (L_2); an input whose gradient is zero does
not move. After each step the change is projected back onto the eps ball, then onto ``bounds``.
PGD returns its last iterate (as Madry et al. and Foolbox do), so it is stronger than FGSM in
practice, not by construction: from a random start, an input that FGSM only just flips can escape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["linf", "l2"]
NORMS = ("linf", "l2")

DEFAULT_STEP_FACTOR = 2.5
"""PGD's default step size is ``DEFAULT_STEP_FACTOR * eps / steps`` (Madry et al. 2018): the
steps together can cross the eps ball, from any random start, once and a quarter."""

NORM_FLOOR = 1e-12
"""Smallest L_2 norm a gradient or a change is divided by (as in Foolbox): a zero one stays zero."""

Autocast = Optional[Callable[[], AbstractContextManager]]


def image_bounds(mean: Sequence[float], std: Sequence[float]) -> tuple[Tensor, Tensor]:
    """The pixel box [0, 1] in normalised units, per channel: ``((0 - mean) / std, (1 - mean) / std)``.

    Args:
        mean, std: the per-channel normalisation of the data module (C values each).

    Returns:
        (low, high), each float32 of shape (C, 1, 1), broadcastable against images (N, C, H, W).
    """
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
    return -mean / std, (1 - mean) / std


def fgsm(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    norm: Norm = "linf",
    *,
    bounds: Optional[tuple[Tensor, Tensor]] = None,
    autocast: Autocast = None,
) -> Tensor:
    """The fast gradient method (Goodfellow et al. 2015): one step of size eps up the loss.

    ``x + eps * sign(g)`` for L_inf (FGSM), ``x + eps * g / ||g||_2`` for L_2, g the gradient of
    the input's cross-entropy; exactly :func:`pgd` with one step of size eps from ``images``.

    Args, Returns, Raises: as :func:`pgd`.
    """
    return pgd(model, images, labels, eps, norm, steps=1, step_size=eps, random_start=False, bounds=bounds,
               autocast=autocast)


def pgd(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    eps: float,
    norm: Norm = "linf",
    *,
    steps: int = 10,
    step_size: Optional[float] = None,
    random_start: bool = True,
    generator: Optional[torch.Generator] = None,
    bounds: Optional[tuple[Tensor, Tensor]] = None,
    autocast: Autocast = None,
) -> Tensor:
    """Projected gradient ascent of the cross-entropy within the eps ball (Madry et al. 2018).

    From ``images`` (or a uniform random point of the eps ball around them), ``steps`` times:
    step up the loss, project the change onto the eps ball, clamp to ``bounds``. Returns the last
    iterate.

    Args:
        model: maps a batch (N, ...) to logits (N, num_classes); on the device of ``images``.
        images: inputs (N, ...), floating, in the model's (normalised) units.
        labels: class indices (N,).
        eps: radius of the ball (>= 0), in the units of ``images`` (see the module's note).
        norm: ``"linf"`` (largest absolute change of an entry) or ``"l2"`` (Euclidean norm of an
            input's whole change).
        steps: iterations (>= 1).
        step_size: length of a step in the units of ``images`` (the sign step's entry size for
            L_inf, the step's L_2 norm for L_2); None for ``DEFAULT_STEP_FACTOR * eps / steps``.
        random_start: start from a point drawn uniformly from the eps ball (the L_inf cube, or the
            L_2 ball by Voelker et al.'s method) instead of from ``images``.
        generator: the CPU generator the random start is drawn from (then moved to the device of
            ``images``, so the draw does not depend on the device); None for torch's global one.
        bounds: (low, high) tensors broadcastable against ``images`` (e.g. :func:`image_bounds`)
            that every attacked input is clamped to; None for no clamping.
        autocast: a context manager factory (e.g. the run's mixed precision) to run the forward
            passes under; None for the model's own precision.

    Returns:
        Adversarial inputs of the shape, dtype and device of ``images``, without gradient
        history; ``images`` itself (a copy) when eps is 0.

    Raises:
        ValueError: a bad eps, norm, steps or step size, or images and labels that do not match.
    """
    _check_batch(images, labels)
    _check_eps(eps)
    if norm not in NORMS:
        raise ValueError(f"norm: got {norm!r}, expected one of {NORMS}")
    if steps < 1:
        raise ValueError(f"steps: got {steps}, expected at least 1")
    step_size = DEFAULT_STEP_FACTOR * eps / steps if step_size is None else step_size
    if not math.isfinite(step_size) or step_size < 0:
        raise ValueError(f"step_size: got {step_size}, expected a finite length >= 0 in the units of the images")
    original = images.detach()
    if eps == 0:
        return original.clone()
    with _attacking(model):
        adversarial = original + _random_start(original, eps, norm, generator) if random_start else original
        adversarial = _clamp(adversarial, bounds)
        for _ in range(steps):
            gradient = _input_gradient(model, adversarial, labels, autocast)
            adversarial = adversarial + step_size * _direction(gradient, norm)
            adversarial = _clamp(original + _project(adversarial - original, eps, norm), bounds)
    return adversarial.detach()


@dataclass(frozen=True)
class Attack:
    """One attack, called by :func:`adversarial_accuracy` at each eps of a grid.

    Args:
        method: ``"fgsm"`` (:func:`fgsm`; ``steps``, ``step_factor`` and ``random_start`` unused)
            or ``"pgd"`` (:func:`pgd`).
        norm: ``"linf"`` or ``"l2"``.
        steps: PGD's iterations.
        step_factor: PGD's step size is ``step_factor * eps / steps``.
        random_start: PGD starts from a uniform random point of the eps ball.
        bounds: the box the attacked inputs are clamped to (see :func:`pgd`), or None.
    """

    method: Literal["fgsm", "pgd"] = "pgd"
    norm: Norm = "linf"
    steps: int = 10
    step_factor: float = DEFAULT_STEP_FACTOR
    random_start: bool = True
    bounds: Optional[tuple[Tensor, Tensor]] = None

    def __post_init__(self) -> None:
        if self.method not in ("fgsm", "pgd"):
            raise ValueError(f"method: got {self.method!r}, expected 'fgsm' or 'pgd'")
        if self.norm not in NORMS:
            raise ValueError(f"norm: got {self.norm!r}, expected one of {NORMS}")
        if self.steps < 1 or not math.isfinite(self.step_factor) or self.step_factor <= 0:
            raise ValueError(f"steps and step_factor: got {self.steps} and {self.step_factor}, expected at "
                             f"least 1 step and a finite step_factor > 0 (step size = step_factor * eps / steps)")

    def __call__(self, model: nn.Module, images: Tensor, labels: Tensor, eps: float, *,
                 generator: Optional[torch.Generator] = None, autocast: Autocast = None) -> Tensor:
        """The adversarial inputs for ``images`` at ``eps`` (see :func:`pgd`)."""
        if self.method == "fgsm":
            return fgsm(model, images, labels, eps, self.norm, bounds=self.bounds, autocast=autocast)
        step_size = self.step_factor * eps / self.steps
        return pgd(model, images, labels, eps, self.norm, steps=self.steps, step_size=step_size,
                   random_start=self.random_start, generator=generator, bounds=self.bounds, autocast=autocast)


def adversarial_accuracy(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    attack: Attack,
    eps_grid: Sequence[float],
    *,
    batch_size: int = 256,
    device: Optional[torch.device] = None,
    autocast: Autocast = None,
    seed: int = 0,
) -> list[float]:
    """Top-1 accuracy of ``model`` on the inputs ``attack`` makes at each eps of ``eps_grid``.

    Args:
        model: maps a batch (B, ...) to logits (B, num_classes); attacked and evaluated in eval
            mode, left as it was (see the module's note).
        images: inputs (N, ...), floating, on any device, in the model's (normalised) units.
        labels: class indices (N,).
        attack: called as ``attack(model, batch, targets, eps, generator=, autocast=)``.
        eps_grid: radii (>= 0) in the units of ``images``; 0 gives the clean accuracy exactly.
        batch_size: inputs per attack.
        device: where the model runs (default: the device of its first parameter).
        autocast: a context manager factory to run the forward passes under; None for the
            model's own precision.
        seed: seeds the random starts: a CPU generator seeded by ``seed`` draws one seed per
            batch, and every eps of a batch starts from the same unit draw scaled by eps, so the
            accuracies depend on ``seed`` and ``batch_size`` only (not on the device, nor on the
            other radii of the grid).

    Returns:
        The fraction of inputs classified correctly (argmax of the logits equals the label), one
        per eps, in the order given.

    Raises:
        ValueError: no eps, a negative or non-finite eps, no inputs, or images and labels differ
            in length.
    """
    _check_batch(images, labels)
    if len(eps_grid) == 0:
        raise ValueError("eps_grid: give at least one radius (>= 0, in the units of the inputs, e.g. 0 0.1 0.3)")
    for eps in eps_grid:
        _check_eps(eps)
    if batch_size < 1:
        raise ValueError(f"batch_size: got {batch_size}, expected at least 1")
    device = device or next(model.parameters()).device
    context = autocast or nullcontext
    seeds = torch.Generator().manual_seed(seed)
    with _attacking(model):
        correct = torch.zeros(len(eps_grid), dtype=torch.int64, device=device)
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device, non_blocking=True)
            targets = labels[start:start + batch_size].to(device, non_blocking=True)
            batch_seed = int(torch.randint(2 ** 62, (1,), generator=seeds))
            for index, eps in enumerate(eps_grid):
                generator = torch.Generator().manual_seed(batch_seed)
                adversarial = attack(model, batch, targets, eps, generator=generator, autocast=autocast)
                with torch.no_grad(), context():
                    logits = model(adversarial)
                correct[index] += (logits.argmax(dim=1) == targets).sum()
    return (correct.double() / len(images)).tolist()


def _check_batch(images: Tensor, labels: Tensor) -> None:
    if not isinstance(images, Tensor) or not images.is_floating_point() or images.ndim < 2:
        got = (f"dtype {images.dtype}, shape {tuple(images.shape)}" if isinstance(images, Tensor)
               else type(images).__name__)
        raise ValueError(f"images: got {got}, expected a floating tensor (N, ...) of inputs; convert with .float()")
    if len(images) == 0 or labels.shape != (len(images),):
        raise ValueError(f"need one label per image (at least one image): got images of shape {tuple(images.shape)} "
                         f"and labels of shape {tuple(labels.shape)}")


def _check_eps(eps: float) -> None:
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps: got {eps}, expected a finite radius >= 0 in the units of the (normalised) inputs")


@contextmanager
def _attacking(model: nn.Module) -> Iterator[None]:
    """Every submodule in eval mode and no parameter requiring gradients, gradients enabled;
    every mode and flag restored on the way out."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    model.eval()
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode


def _input_gradient(model: nn.Module, inputs: Tensor, labels: Tensor, autocast: Autocast) -> Tensor:
    """The gradient of the summed cross-entropy with respect to ``inputs`` only."""
    inputs = inputs.clone().requires_grad_(True)
    with (autocast or nullcontext)():
        logits = model(inputs)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    loss = F.cross_entropy(logits, labels.to(logits.device), reduction="sum")
    return torch.autograd.grad(loss, inputs)[0].to(inputs.dtype)


def _per_input_l2(x: Tensor) -> Tensor:
    """The L_2 norm of each input's entries, floored at NORM_FLOOR, shaped to broadcast against x."""
    norms = torch.linalg.vector_norm(x.flatten(1), dim=1).clamp_min(NORM_FLOOR)
    return norms.reshape(-1, *[1] * (x.ndim - 1))


def _direction(gradient: Tensor, norm: Norm) -> Tensor:
    return gradient.sign() if norm == "linf" else gradient / _per_input_l2(gradient)


def _project(change: Tensor, eps: float, norm: Norm) -> Tensor:
    """The nearest point of the eps ball (per input) to ``change``."""
    if norm == "linf":
        return change.clamp(-eps, eps)
    return change * torch.clamp(eps / _per_input_l2(change), max=1.0)


def _random_start(images: Tensor, eps: float, norm: Norm, generator: Optional[torch.Generator]) -> Tensor:
    """A change drawn uniformly from the eps ball around each input (on the CPU, then moved)."""
    if norm == "linf":
        unit = 2 * torch.rand(images.shape, generator=generator, dtype=images.dtype) - 1
    else:
        # Voelker et al. (2017): the first n coordinates of a uniform point of the (n + 1)-sphere
        # in R^(n + 2) are uniform in the n-ball.
        n = images[0].numel()
        sphere = torch.randn(len(images), n + 2, generator=generator, dtype=images.dtype)
        unit = (sphere / torch.linalg.vector_norm(sphere, dim=1, keepdim=True))[:, :n].reshape(images.shape)
    return eps * unit.to(images.device)


def _clamp(images: Tensor, bounds: Optional[tuple[Tensor, Tensor]]) -> Tensor:
    if bounds is None:
        return images
    low, high = (bound.to(images.device, images.dtype) for bound in bounds)
    return torch.maximum(torch.minimum(images, high), low)
