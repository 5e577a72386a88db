"""Stiffness of residual blocks, read as forward-Euler steps x_{t+1} = x_t + a_t f_t(x_t)
(arXiv 2308.09939; the paper's formulas were not available to us: the definitions are our
choices, fixed before any result, each a documented setting or function).

Per residual block t (every ``block`` probe point whose extras name its ``input`` x_t and its
``residual`` branch f_t), on the probe set, in eval mode:

- channel rates r_{t,c} = ||f_t(x_t)_c|| / ||x_{t,c}|| (norms over inputs and positions):
  ``stiffness_feature`` = max_c r / min_c r over live channels, ``stiffness_feature_q`` =
  q_high / q_low (robust to one extreme channel), ``rate_mean``;
- the Jacobian J_t = d f_t / d x at ``jacobian_inputs`` probe inputs (the first ones of the probe
  set, which is drawn by ``seed``; x is the block's own input, which the branch reads):
  ``stiffness_jacobian`` = mean sigma_max / sigma_min (smallest *nonzero* singular value),
  ``jacobian_sigma_max`` = mean sigma_max; matrix-free Lanczos (``probes.stiffness``), stopped
  at ``jacobian_tol`` or after ``jacobian_max_iter`` steps: ``jacobian_converged`` is the fraction
  of those inputs that reached the tolerance (below 1, the two numbers are unconverged estimates,
  no bounds: see ``probes.stiffness``; one warning per epoch names the setting to raise);
- with a gate a_t (SE or the step-size stand-in): ``gate_mean`` and ``gate_std`` (over inputs and
  channels) and ``gate_rate_spearman``, Spearman's rho across channels between the mean gate
  and the rate.

The maths is :mod:`attnconv_pl.probes.stiffness`; rates and gates are captured as per-channel
norms per input (the ``channel_norms`` representation), so memory is (N, C) per block.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import nn

from attnconv_pl.analyses.base import (
    Analysis,
    AnalysisResult,
    CheckpointInputs,
    MetricFamily,
    check_field_types,
    is_scheduled_epoch,
)
from attnconv_pl.analyses.session import check_shared_fields
from attnconv_pl.capture import Projector, capture_activations
from attnconv_pl.models import ProbePoint, points_of_kind
from attnconv_pl.probes import stiffness as maths


@dataclass(frozen=True)
class StiffnessSettings:
    """What the stiffness analysis measures (see the module docstring).

    Args:
        probe_split: split the probe set is drawn from (None, the default: the probing session's
            ``probing.probe_split``).
        probe_size: inputs of the probe set (all of the split when smaller), drawn by ``seed``
            (None, the default: ``probing.probe_size``).
        quantile_low: lower quantile of the robust index ``stiffness_feature_q``.
        quantile_high: upper quantile of the robust index.
        jacobian_inputs: probe inputs the Jacobian index is averaged over (0: no Jacobian numbers).
        jacobian_max_iter: most Lanczos steps per input (one JVP and one VJP each). 500 converged
            every block of ResNet-20 at 16 px (digits: at initialisation, after 2 and after 10
            epochs); 200 left 8 of its 9 blocks unconverged once trained.
        jacobian_tol: relative error bound on both singular values that stops the iteration.
        seed: draws the probe set and the Lanczos start vectors (None, the default: ``probing.seed``).
        batch_size: inputs per forward pass (None, the default: ``probing.batch_size``).
        every_n_epochs: during training, probe every this many epochs (plus epoch 0 and the last).
    """

    probe_split: Optional[Literal["train", "val", "test"]] = None
    probe_size: Optional[int] = None
    quantile_low: float = 0.05
    quantile_high: float = 0.95
    jacobian_inputs: int = 8
    jacobian_max_iter: int = 500
    jacobian_tol: float = 1e-3
    seed: Optional[int] = None
    batch_size: Optional[int] = None
    every_n_epochs: int = 1

    def __post_init__(self) -> None:
        check_field_types(self)
        if not 0 <= self.quantile_low < self.quantile_high <= 1:
            raise ValueError(f"need 0 <= quantile_low < quantile_high <= 1, got {self.quantile_low}, "
                             f"{self.quantile_high}")
        if (self.probe_size is not None and self.probe_size < 2) or self.jacobian_inputs < 0:
            raise ValueError(f"probe_size must be >= 2 and jacobian_inputs >= 0, got {self.probe_size}, "
                             f"{self.jacobian_inputs}")
        check_shared_fields(self)
        for name in ("jacobian_max_iter", "every_n_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.jacobian_tol > 0:
            raise ValueError(f"jacobian_tol must be > 0, got {self.jacobian_tol}")

    def is_scheduled(self, epoch: int, max_epochs: Optional[int]) -> bool:
        return is_scheduled_epoch(epoch, self.every_n_epochs, max_epochs)


def rate_numbers(x: torch.Tensor, fx: torch.Tensor, gate: Optional[torch.Tensor],
                 settings: StiffnessSettings) -> dict[str, float]:
    """The feature numbers of one block from per-channel norms per input.

    Args:
        x: (N, C) norms over positions of each input's x_t channels.
        fx: (N, C) the same of f_t(x_t).
        gate: (N, C) the gate a_t per input and channel (None without a gate).
        settings: the quantiles.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate block is a NaN in the table, not a warning per epoch
        values = {"stiffness_feature": maths.feature_stiffness(x, fx),
                  "stiffness_feature_q": maths.feature_stiffness_quantile(x, fx, settings.quantile_low,
                                                                         settings.quantile_high),
                  "rate_mean": maths.rate_mean(x, fx)}
        if gate is not None:
            values |= {"gate_mean": float(gate.double().mean()), "gate_std": float(gate.double().std()),
                       "gate_rate_spearman": maths.gate_rate_correlation(gate, maths.channel_rates(x, fx))}
    return values


class Stiffness(Analysis):
    """Stiffness of every residual block a model describes.

    Args:
        settings: what to measure.
        blocks: the ``block`` probe points with ``input`` and ``residual`` extras, in depth order.
    """

    name = "stiffness"
    settings_type = StiffnessSettings
    families = (
        MetricFamily("stiffness", "Stiffness: how unevenly each residual block moves its channels",
                     r"stiffness_feature(_q)?|stiffness_jacobian|rate_mean|jacobian_.+"),
        MetricFamily("gates", "Gates: channel attention as a per-channel step size", r"gate_.+"),
    )

    def __init__(self, settings: StiffnessSettings, blocks: list[ProbePoint]) -> None:
        super().__init__(settings)
        self.blocks = list(blocks)

    @classmethod
    def for_model(cls, settings: StiffnessSettings, model: nn.Module) -> Stiffness:
        """The residual blocks of ``model``'s description.

        Raises:
            ValueError: no block point names its input and residual branch.
        """
        blocks = [point for point in points_of_kind(getattr(model, "feature_info", []), "block")
                  if {"input", "residual"} <= set(point.extras)]
        if not blocks:
            raise ValueError(f"{type(model).__name__} describes no residual block with its input and residual "
                             "branch (block probe points with extras 'input' and 'residual'); the stiffness "
                             "analysis needs a CIFAR ResNet such as resnet20")
        return cls(settings, blocks)

    def run(self, epoch: int, norms: dict[str, dict[str, torch.Tensor]],
            jacobians: dict[str, maths.SingularExtremes]) -> AnalysisResult:
        """Every number of ``epoch``.

        Args:
            norms: per block, ``{"input": (N, C), "residual": (N, C), "gate": (N, C)}`` per-channel
                norms per input ("gate" only with a gate).
            jacobians: per block, (sigma_max (n,), sigma_min (n,), converged (n,)) ({} without
                Jacobian numbers).

        Returns:
            The numbers, and the artifact ``channels``: per gated block, (rates (C,), mean gate (C,))
            per channel, what the report draws. Warns once when some input of some block did not
            converge.
        """
        result = AnalysisResult(epoch)
        channels = result.artifacts["channels"] = {}
        for block in self.blocks:
            found = norms[block.module]
            values = rate_numbers(found["input"], found["residual"], found.get("gate"), self.settings)
            if "gate" in found:
                channels[block.module] = (maths.channel_rates(found["input"], found["residual"]).numpy(),
                                          found["gate"].double().mean(dim=0).numpy())
            if block.module in jacobians:
                sigma_max, sigma_min, converged = jacobians[block.module]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    values["stiffness_jacobian"] = maths.mean_singular_ratio(sigma_max, sigma_min)
                values["jacobian_sigma_max"] = float(sigma_max.mean()) if len(sigma_max) else math.nan
                values["jacobian_converged"] = float(converged.double().mean()) if len(converged) else math.nan
            result.values.update({(block.module, metric): value for metric, value in values.items()})
        self._warn_unconverged(jacobians)
        return result

    def _warn_unconverged(self, jacobians: dict[str, maths.SingularExtremes]) -> None:
        """One warning naming the blocks whose Jacobian inputs ``jacobian_max_iter`` stopped."""
        stopped = {block: int((~extremes.converged).sum()) for block, extremes in jacobians.items()
                   if not extremes.converged.all()}
        if stopped:
            counts = ", ".join(f"{block} {count} of {len(jacobians[block].converged)}"
                               for block, count in stopped.items())
            warnings.warn(f"stiffness: Lanczos stopped at jacobian_max_iter={self.settings.jacobian_max_iter} "
                          f"steps before jacobian_tol={self.settings.jacobian_tol} for some inputs ({counts}); "
                          "their stiffness_jacobian and jacobian_sigma_max are unconverged estimates (no bounds), "
                          "marked by jacobian_converged < 1. Raise stiffness.jacobian_max_iter (train.py: "
                          "--stiffness.jacobian_max_iter; probe.py: --stiffness.jacobian_max_iter N).",
                          RuntimeWarning, stacklevel=2)

    def probe_checkpoint(self, checkpoint: CheckpointInputs) -> AnalysisResult:
        """Capture the blocks' per-channel norms on the probe set and their Jacobians at the first
        ``jacobian_inputs`` probe inputs, then :meth:`run`."""
        settings, model = self.settings, checkpoint.model
        images = checkpoint.inputs(settings.probe_split, settings.probe_size).images
        sides = {(block.module, role): block.extras[role] for block in self.blocks
                 for role in ("input", "residual", "gate") if role in block.extras}
        batches = (images[start:start + settings.batch_size].to(checkpoint.device)
                   for start in range(0, len(images), settings.batch_size))
        captured = capture_activations(model, list(dict.fromkeys(sides.values())), batches,
                                       representation="channel_norms", projector=Projector(),
                                       autocast=checkpoint.autocast, capture_inputs=False)
        norms: dict[str, dict[str, torch.Tensor]] = {}
        for (block, role), module in sides.items():
            norms.setdefault(block, {})[role] = captured[module]["output"].double().cpu()
        return self.run(checkpoint.epoch, norms, self._jacobians(model, images[:settings.jacobian_inputs],
                                                                  checkpoint.device))

    def _jacobians(self, model: nn.Module, images: torch.Tensor, device: torch.device
                   ) -> dict[str, maths.SingularExtremes]:
        """(sigma_max, sigma_min, converged) per block at ``images``: each block's own input is
        recorded by a forward pre-hook, then its residual branch is differentiated there (float32,
        eval mode)."""
        if len(images) == 0:
            return {}
        inputs: dict[str, torch.Tensor] = {}
        handles = [model.get_submodule(block.module).register_forward_pre_hook(
            lambda module, args, name=block.module: inputs.__setitem__(name, args[0].detach()))
            for block in self.blocks]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(images.to(device))
            found = {}
            for index, block in enumerate(self.blocks):
                branch = model.get_submodule(block.extras["residual"])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # :meth:`run` warns once for every block, naming the setting
                    found[block.module] = maths.jacobian_singular_extremes(
                        branch, inputs[block.module].float(), max_iter=self.settings.jacobian_max_iter,
                        tol=self.settings.jacobian_tol, seed=self.settings.seed + index)
            return found
        finally:
            for handle in handles:
                handle.remove()
            model.train(was_training)
