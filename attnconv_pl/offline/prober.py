"""Probe the checkpoints of one run through the training callback's own pipeline.

For each checkpoint, in epoch order: load its weights, run the probe set through the network
(``capture_probe_images``), round the points to the snapshot dtype (``round_to_dtype``) and
probe them with the run's :class:`~attnconv_pl.analyses.dynamics.Dynamics`: what
``callbacks.FeatureDynamics`` does after an epoch, with the same :class:`DynamicsSettings`, built
from the ``dynamics`` section of the run's ``config.yaml`` (plus the user's overrides). So with no
overrides the numbers equal the ones the run logged. Every analysis is built from its settings
dataclass, never from a callback.

``drift_prev_*`` is measured against the run's preceding numbered checkpoint and
``drift_init_*`` against ``epoch=000.ckpt``; when those were not among the checkpoints to probe,
they are captured (not probed) as references.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from attnconv_pl.analyses.base import AnalysisResult, settings_from
from attnconv_pl.analyses.dynamics import Dynamics, DynamicsSettings
from attnconv_pl.analyses.robustness import Robustness, RobustnessSettings
from attnconv_pl.capture import Activations, Projector, resolve_layers
from attnconv_pl.capture.probe_set import capture_probe_images, round_to_dtype
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.offline.checkpoints import (RunCheckpoints, build_module, callback_state, checkpoint_epoch,
                                             data_config, load_weights, read_checkpoint, read_run_config)
from attnconv_pl.offline.data_choice import (DataChoice, ProbeSet, build_datamodule, forward_context,
                                             load_probe_set)


@dataclass
class CheckpointOutcome:
    """What probing one checkpoint gave: its numbers, probe-set accuracy (None when the probe
    set is not from the run's own data), accuracy under noise per noise level (None when not
    asked for) and seconds spent per stage (``load``, ``references``, ``capture``, ``probes``,
    ``robustness``)."""

    path: Path
    epoch: int
    result: AnalysisResult
    accuracy: Optional[float]
    robustness: Optional[list[float]] = None
    seconds: dict[str, float] = field(default_factory=dict)


def dynamics_settings(run_config: dict[str, Any], checkpoint: dict[str, Any], overrides: dict[str, Any],
                      source: Path) -> DynamicsSettings:
    """The :class:`DynamicsSettings` the run probed with (its config's ``dynamics`` section; for a
    checkpoint without a run directory, the layers and seed saved in its callback state), with
    ``overrides`` applied.

    Raises:
        ProbeInputError: the config or an override is not a valid setting.
    """
    if "dynamics" in run_config:
        saved = run_config["dynamics"] or {}
    else:
        state = callback_state(checkpoint)
        saved = {key: state[key] for key in ("layers", "seed") if state.get(key) is not None}
    try:
        return settings_from(DynamicsSettings, {**dict(saved), **overrides})
    except (TypeError, ValueError, KeyError) as error:
        raise ProbeInputError(
            f"the probe settings of {source} are not valid ({error}); check the dynamics section of its "
            "config.yaml and the options given") from error


def probed_layers(network: nn.Module, patterns: Optional[list[str]], run_name: str) -> list[str]:
    """The layers ``patterns`` select (default: the network's ``probe_layers``), in order.

    Raises:
        ProbeInputError: a pattern matches no layer (the message lists the layers).
    """
    try:
        return resolve_layers(network, patterns or network.probe_layers)
    except ValueError as error:
        raise ProbeInputError(f"run {run_name}: {error} (option --layers)") from error


@contextmanager
def recorded_outputs(network: nn.Module) -> Iterator[list[Tensor]]:
    """Inside the block, every forward pass of ``network`` appends its output (logits) to the
    yielded list; the hook is removed on exit."""
    outputs: list[Tensor] = []
    handle = network.register_forward_hook(lambda module, args, output: outputs.append(output.detach().float()))
    try:
        yield outputs
    finally:
        handle.remove()


class RunProber:
    """Probes the checkpoints of one run, in epoch order, through one :class:`Dynamics` analysis
    (and, when asked for, the :class:`Robustness` analysis).

    Build it with :meth:`open` (reads the first checkpoint, builds the model, the probe
    settings and the probe set), then call :meth:`probe` on each checkpoint of the run.

    Attributes:
        dynamics: the probe settings.
        analysis: the dynamics analysis (None when ``--analyses`` leaves it out).
        layers: probed layers in depth order.
        probe_set: the probe set.
        robustness: the robustness analysis (None: no robustness evaluation).
        robustness_set: the inputs of the robustness evaluation (None without one).
        hparams: the model's hyper-parameters.
        data_class_path: the data module the run was trained on ("" when unknown).
        run_config: the run's ``config.yaml`` ({} without a run directory).
        data_seconds: seconds spent building the probe set.
    """

    def __init__(self, run: RunCheckpoints, module, first: tuple[Path, dict[str, Any]], layers: list[str],
                 dynamics: DynamicsSettings, probe_set: ProbeSet, run_config: dict[str, Any],
                 data_class_path: str, device: torch.device, model_seconds: float, data_seconds: float,
                 robustness: Optional[RobustnessSettings] = None, robustness_set: Optional[ProbeSet] = None,
                 run_dynamics: bool = True) -> None:
        self.run = run
        self.module = module.to(device).eval()
        self.hparams = dict(module.hparams)
        self.layers = layers
        self.dynamics = dynamics
        self.probe_set = probe_set
        self.robustness = Robustness(robustness) if robustness is not None else None
        self.robustness_set = robustness_set
        self.run_config = run_config
        self.data_class_path = data_class_path
        self.device = device
        self.data_seconds = data_seconds
        self.analysis = Dynamics(dynamics, self.layers) if run_dynamics else None
        self.projector = Projector(project_dim=dynamics.project_dim, seed=dynamics.seed)
        trainer = run_config.get("trainer") or {}
        self.max_epochs: Optional[int] = trainer.get("max_epochs")
        self.autocast = forward_context(trainer.get("precision", "32-true"), device)
        self._pending: Optional[tuple[Path, dict[str, Any]]] = first
        self._pending_seconds = model_seconds
        self._last_epoch: Optional[int] = None

    @classmethod
    def open(cls, run: RunCheckpoints, *, overrides: dict[str, Any], choice: DataChoice, device: torch.device,
             probe_sets: Optional[dict[str, ProbeSet]] = None,
             robustness: Optional[RobustnessSettings] = None, dynamics: bool = True) -> RunProber:
        """Read the run's first checkpoint and prepare everything its probes need.

        Args:
            run: the run's checkpoints.
            overrides: :class:`DynamicsSettings` fields replacing the run's (``layers``, ...).
            choice: the data to probe on (``--data``).
            device: where the model runs.
            probe_sets: probe sets (and robustness inputs) already loaded for earlier runs, by
                data settings; those this run needs are taken from it or added to it.
            robustness: also measure accuracy under input noise (on the run's own data,
                ``robustness.size`` inputs of ``robustness.split`` drawn by the probe seed).
            dynamics: run the dynamics analysis (capture and probes) on each checkpoint.

        Raises:
            ProbeInputError: any input problem (checkpoint, settings, layers, data).
        """
        opened = time.perf_counter()
        path = run.checkpoints[0]
        checkpoint = read_checkpoint(path)
        module = build_module(checkpoint, path)
        model_seconds = time.perf_counter() - opened
        run_config = read_run_config(run.run_dir)
        if choice.split:
            overrides = {**overrides, "probe_split": choice.split}
        settings = dynamics_settings(run_config, checkpoint, overrides, run.run_dir or path)
        layers = probed_layers(module.model, settings.layers, run.name)
        try:
            class_path, init_args = data_config(checkpoint, run_config, path)
        except ProbeInputError:
            if choice.dataset is None:
                raise
            class_path, init_args = "", {}
        hparams = dict(module.hparams)
        started = time.perf_counter()
        cache = {} if probe_sets is None else probe_sets

        def input_set(split: str, size: int) -> ProbeSet:
            key = json.dumps([class_path, init_args, choice, split, size, settings.seed, hparams.get("image_size"),
                              hparams.get("in_chans")], sort_keys=True, default=str)
            if key not in cache:
                datamodule = build_datamodule(class_path, init_args, choice, hparams)
                cache[key] = load_probe_set(datamodule, split, size, settings.seed, own_data=choice.dataset is None)
            return cache[key]

        probe_set = input_set(settings.probe_split, settings.probe_size)
        robustness_set = input_set(robustness.split, robustness.size) if robustness is not None else None
        return cls(run, module, (path, checkpoint), layers, settings, probe_set, run_config, class_path, device,
                   model_seconds, time.perf_counter() - started, robustness, robustness_set, run_dynamics=dynamics)

    def _read(self, path: Path) -> tuple[dict[str, Any], float]:
        """A checkpoint's content and the seconds already spent on it (:meth:`open` read the
        first one and built the model from it)."""
        if self._pending is not None and self._pending[0] == path:
            checkpoint, self._pending = self._pending[1], None
            return checkpoint, self._pending_seconds
        return read_checkpoint(path), 0.0

    def _snapshot(self) -> Activations:
        """The current weights' points of the probe set, rounded as the callback stores them."""
        network = self.module.model
        points = capture_probe_images(network, self.probe_set.images, self.layers,
                                      representation=self.dynamics.representation,
                                      projector=self.projector, batch_size=self.dynamics.batch_size,
                                      device=self.device, autocast=self.autocast,
                                      capture_inputs=self.dynamics.capture_inputs)
        return round_to_dtype(points, self.dynamics.torch_snapshot_dtype)

    def _reference(self, path: Path) -> Activations:
        load_weights(self.module, self._read(path)[0], path)
        return self._snapshot()

    def _restore_references(self, epoch: int) -> None:
        """Give the analysis the preceding numbered checkpoint and epoch 0, as the callback had
        them, unless it just probed the preceding one."""
        numbered = self.run.epoch_checkpoints()
        earlier = [e for e in numbered if e < epoch]
        if epoch == 0 or not earlier or self._last_epoch == max(earlier):
            return
        initial = self.analysis.initial
        if initial is None and 0 in numbered:
            initial = self._reference(numbered[0])
        previous = initial if max(earlier) == 0 else self._reference(numbered[max(earlier)])
        self.analysis.restore(previous, initial)

    def probe(self, path: Path) -> CheckpointOutcome:
        """Every number of one checkpoint (see :func:`attnconv_pl.analyses.dynamics.run_probes`).

        Raises:
            ProbeInputError: the checkpoint cannot be read or does not fit the model, or it
                is not later than the run's previously probed checkpoint.
        """
        started = time.perf_counter()
        checkpoint, earlier = self._read(path)
        started -= earlier
        epoch = checkpoint_epoch(path, checkpoint)
        if self._last_epoch is not None and epoch <= self._last_epoch:
            raise ProbeInputError(
                f"{path} holds epoch {epoch}, but run {self.run.name} was already probed up to epoch "
                f"{self._last_epoch}; give each epoch of a run once (a run directory already means all its "
                "epoch=NNN.ckpt)")
        read = time.perf_counter()
        if self.analysis is not None:
            self._restore_references(epoch)
        referenced = time.perf_counter()
        load_weights(self.module, checkpoint, path)
        loaded = time.perf_counter()
        result, logits = AnalysisResult(epoch), []
        if self.analysis is not None:
            with recorded_outputs(self.module.model) as logits:
                snapshot = self._snapshot()
        captured = time.perf_counter()
        if self.analysis is not None:
            result = self.analysis.run(epoch, snapshot, topology=self.dynamics.with_topology(epoch, self.max_epochs))
        probed = time.perf_counter()
        result.values[("", "overhead_seconds")] = probed - started
        self._last_epoch = epoch
        robustness = self._robustness()
        seconds = {"load": (read - started) + (loaded - referenced), "references": referenced - read,
                   "capture": captured - loaded, "probes": probed - captured,
                   "robustness": time.perf_counter() - probed}
        return CheckpointOutcome(path, epoch, result, self._accuracy(logits), robustness, seconds)

    def _robustness(self) -> Optional[list[float]]:
        """Accuracy of the loaded weights under input noise, per noise level (None when not asked
        for); noise drawn by the probe seed, forward passes under the run's precision."""
        if self.robustness is None:
            return None
        inputs = self.robustness_set
        return self.robustness.run(self._last_epoch, self.module.model, inputs.images, inputs.labels,
                                   seed=self.dynamics.seed, batch_size=self.dynamics.batch_size, device=self.device,
                                   autocast=self.autocast).artifacts["accuracy"]

    def _accuracy(self, logits: list[Tensor]) -> Optional[float]:
        """Top-1 accuracy of the recorded logits on the probe set's labels (own data only)."""
        if not self.probe_set.own_data or not logits:
            return None
        predictions = torch.cat(logits).argmax(dim=1).cpu()
        return float((predictions == self.probe_set.labels).float().mean())
