"""Probe the checkpoints of one run through a list of analyses, each built from its settings.

For each checkpoint, in epoch order: load its weights, then run every analysis on it
(:meth:`~attnconv_pl.analyses.base.Analysis.probe_checkpoint`). Each analysis's settings are
the run's own (the section of its name in the run's ``config.yaml``; for ``dynamics`` of a
checkpoint without a run directory, the layers and seed saved in its callback state) with the
user's overrides, so with no overrides the dynamics numbers equal the ones the run logged: the
dynamics analysis captures the probe set exactly as ``callbacks.FeatureDynamics`` does. Every
analysis is built from its settings dataclass, never from a callback.

The run's dynamics settings always exist (defaults when the run has none, with the user's
probe options applied whichever analyses run): their ``seed`` draws the input sets, and their
``batch_size`` sizes the forward passes, of every analysis whose settings have no ``seed`` or
``batch_size`` of their own (as during training). Input sets are loaded only when an analysis asks for
them, and shared between analyses and runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from attnconv_pl.analyses import Analysis, load_analysis
from attnconv_pl.analyses.base import AnalysisResult, CheckpointInputs, settings_from
from attnconv_pl.analyses.dynamics import DynamicsSettings
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.io.run_dir import read_run_config
from attnconv_pl.offline.checkpoints import (
    RunCheckpoints,
    build_module,
    callback_state,
    checkpoint_epoch,
    data_config,
    load_weights,
    read_checkpoint,
)
from attnconv_pl.offline.data_choice import DataChoice, ProbeSet, build_datamodule, forward_context, load_probe_set


@dataclass
class CheckpointOutcome:
    """What probing one checkpoint gave: each analysis's result (by analysis name, in the order
    they ran) and seconds spent per stage (``load``, then per analysis its name, or the stages it
    reports in its artifact ``seconds``: dynamics' ``references``, ``capture``, ``probes``)."""

    path: Path
    epoch: int
    results: dict[str, AnalysisResult]
    seconds: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[tuple[int, str, str, float]]:
        """Every number of the checkpoint as ``dynamics.csv`` rows: the analyses' in order, then
        ``overhead_seconds`` (load plus every analysis)."""
        rows = [row for result in self.results.values() for row in result.rows()]
        return rows + [(self.epoch, "", "overhead_seconds", sum(self.seconds.values()))]

    @property
    def accuracy(self) -> Optional[float]:
        """Top-1 accuracy on the probe set (None unless dynamics ran on the run's own data)."""
        result = self.results.get("dynamics")
        return result.artifacts.get("probe_accuracy") if result is not None else None


def analysis_settings(name: str, run_config: dict[str, Any], checkpoint: dict[str, Any], overrides: dict[str, Any],
                      source: Path) -> Any:
    """The settings of analysis ``name`` the run used (its config's section of that name; for
    ``dynamics`` without a run config, the layers and seed saved in the callback state), with
    ``overrides`` applied.

    Raises:
        ProbeInputError: the config or an override is not a valid setting.
    """
    settings_type = load_analysis(name).settings_type
    if name in run_config:
        saved = run_config[name] or {}
    elif name == "dynamics":
        state = callback_state(checkpoint)
        saved = {key: state[key] for key in ("layers", "seed") if state.get(key) is not None}
    else:
        saved = {}
    try:
        return settings_from(settings_type, {**dict(saved), **overrides})
    except (TypeError, ValueError, KeyError) as error:
        raise ProbeInputError(
            f"the {name} settings of {source} are not valid ({error}); check the {name} section of its "
            "config.yaml and the options given") from error


class RunProber:
    """Probes the checkpoints of one run, in epoch order, through a list of analyses.

    Build it with :meth:`open` (reads the first checkpoint, builds the model and the analyses),
    then call :meth:`probe` on each checkpoint of the run.

    Attributes:
        analyses: the analyses by name, in the order they run.
        probe_settings: the run's dynamics settings (seed and batch size of every analysis).
        layers: the dynamics analysis's layers in depth order ([] without it).
        input_sets: the input sets loaded so far, by (split, size).
        hparams: the model's hyper-parameters.
        data_class_path: the data module the run was trained on ("" when unknown).
        run_config: the run's ``config.yaml`` ({} without a run directory).
        data_seconds: seconds spent loading input sets.
    """

    def __init__(self, run: RunCheckpoints, module, first: tuple[Path, dict[str, Any]],
                 analyses: dict[str, Analysis], probe_settings: DynamicsSettings, run_config: dict[str, Any],
                 data_class_path: str, device: torch.device, model_seconds: float, load_inputs) -> None:
        self.run = run
        self.module = module.to(device).eval()
        self.hparams = dict(module.hparams)
        self.analyses = analyses
        self.probe_settings = probe_settings
        self.run_config = run_config
        self.data_class_path = data_class_path
        self.device = device
        self.data_seconds = 0.0
        self.input_sets: dict[tuple[str, int, int], ProbeSet] = {}
        self._load_inputs = load_inputs
        dynamics = analyses.get("dynamics")
        self.layers: list[str] = list(dynamics.layers) if dynamics is not None else []
        trainer = run_config.get("trainer") or {}
        self.max_epochs: Optional[int] = trainer.get("max_epochs")
        self.autocast = forward_context(trainer.get("precision", "32-true"), device)
        self._pending: Optional[tuple[Path, dict[str, Any]]] = first
        self._pending_seconds = model_seconds
        self._last_epoch: Optional[int] = None

    @classmethod
    def open(cls, run: RunCheckpoints, *, analyses: dict[str, dict[str, Any]], choice: DataChoice,
             device: torch.device, probing: Optional[dict[str, Any]] = None,
             probe_sets: Optional[dict[str, ProbeSet]] = None, trusted_arch: Optional[str] = None) -> RunProber:
        """Read the run's first checkpoint and build its analyses.

        Args:
            run: the run's checkpoints.
            analyses: ``{name: overrides}``, the analyses to run, in order, each with the settings
                fields replacing the run's (e.g. ``{"dynamics": {"layers": [...]}}``).
            choice: the data to probe on (``--data``); its split replaces the dynamics probe split.
            device: where the model runs.
            probing: :class:`~attnconv_pl.analyses.session.ProbingSettings` fields replacing the
                run's (seed, batch size, probe split and size), whether dynamics runs or not.
            probe_sets: input sets already loaded for earlier runs, by data settings; those this
                run needs are taken from it or added to it.
            trusted_arch: the import path ``package.module:Name`` the user named (``--arch``):
                a checkpoint of a network built by it may be probed (see ``build_module``).

        Raises:
            ProbeInputError: any input problem (checkpoint, settings, layers, data, a model
                without what an analysis needs).
        """
        opened = time.perf_counter()
        path = run.checkpoints[0]
        checkpoint = read_checkpoint(path)
        module = build_module(checkpoint, path, trusted_arch)
        model_seconds = time.perf_counter() - opened
        run_config = read_run_config(run.run_dir)
        source = run.run_dir or path
        dynamics_overrides = {**(probing or {}), **analyses.get("dynamics", {})}
        if choice.split:
            dynamics_overrides["probe_split"] = choice.split
        probe_settings = analysis_settings("dynamics", run_config, checkpoint, dynamics_overrides, source)
        built: dict[str, Analysis] = {}
        for name, overrides in analyses.items():
            settings = probe_settings if name == "dynamics" else analysis_settings(
                name, run_config, checkpoint, overrides, source)
            try:
                built[name] = load_analysis(name).for_model(settings, module.model)
            except ValueError as error:
                raise ProbeInputError(f"run {run.name}, analysis {name}: {error}") from error
        try:
            class_path, init_args = data_config(checkpoint, run_config, path)
        except ProbeInputError:
            if choice.dataset is None:
                raise
            class_path, init_args = "", {}
        hparams = dict(module.hparams)
        cache = {} if probe_sets is None else probe_sets

        def load_inputs(split: str, size: int, seed: int) -> ProbeSet:
            key = json.dumps([class_path, init_args, choice, split, size, seed,
                              hparams.get("image_size"), hparams.get("in_chans")], sort_keys=True, default=str)
            if key not in cache:
                datamodule = build_datamodule(class_path, init_args, choice, hparams)
                cache[key] = load_probe_set(datamodule, split, size, seed, own_data=choice.dataset is None)
            return cache[key]

        return cls(run, module, (path, checkpoint), built, probe_settings, run_config, class_path, device,
                   model_seconds, load_inputs)

    @property
    def probe_set(self) -> Optional[ProbeSet]:
        """The dynamics probe set (None when dynamics did not run or loaded none yet)."""
        settings = self.probe_settings
        key = (settings.probe_split, settings.probe_size, settings.seed)
        return self.input_sets.get(key) if "dynamics" in self.analyses else None

    def inputs(self, split: str, size: int, seed: int) -> ProbeSet:
        """Up to ``size`` inputs of ``split`` drawn by ``seed`` (loaded once)."""
        key = (split, size, seed)
        if key not in self.input_sets:
            started = time.perf_counter()
            self.input_sets[key] = self._load_inputs(split, size, seed)
            self.data_seconds += time.perf_counter() - started
        return self.input_sets[key]

    def _read(self, path: Path) -> tuple[dict[str, Any], float]:
        """A checkpoint's content and the seconds already spent on it (:meth:`open` read the
        first one and built the model from it)."""
        if self._pending is not None and self._pending[0] == path:
            checkpoint, self._pending = self._pending[1], None
            return checkpoint, self._pending_seconds
        return read_checkpoint(path), 0.0

    @contextmanager
    def _weights_of(self, epoch: int, current: tuple[Path, dict[str, Any]]) -> Iterator[None]:
        """The weights of the run's ``epoch=NNN.ckpt`` inside the block, ``current``'s after it."""
        reference = self.run.epoch_checkpoints()[epoch]
        load_weights(self.module, self._read(reference)[0], reference)
        try:
            yield
        finally:
            load_weights(self.module, current[1], current[0])

    def probe(self, path: Path, on_step: Optional[Callable[[str], None]] = None) -> CheckpointOutcome:
        """Every analysis's numbers of one checkpoint; ``on_step`` (progress) is called with each
        analysis's name before it runs.

        Raises:
            ProbeInputError: the checkpoint cannot be read or does not fit the model, or it
                is not later than the run's previously probed checkpoint.
        """
        started = time.perf_counter()
        checkpoint, earlier = self._read(path)
        epoch = checkpoint_epoch(path, checkpoint)
        if self._last_epoch is not None and epoch <= self._last_epoch:
            raise ProbeInputError(
                f"{path} holds epoch {epoch}, but run {self.run.name} was already probed up to epoch "
                f"{self._last_epoch}; give each epoch of a run once (a run directory already means all its "
                "epoch=NNN.ckpt)")
        load_weights(self.module, checkpoint, path)
        seconds = {"load": time.perf_counter() - started + earlier}
        results = {}
        for name, analysis in self.analyses.items():
            if on_step is not None:
                on_step(name)
            began = time.perf_counter()
            seed = getattr(analysis.settings, "seed", self.probe_settings.seed)
            inputs = CheckpointInputs(
                epoch=epoch, model=self.module.model, device=self.device, autocast=self.autocast, seed=seed,
                batch_size=getattr(analysis.settings, "batch_size", self.probe_settings.batch_size),
                max_epochs=self.max_epochs,
                inputs=lambda split, size, seed=seed: self.inputs(split, size, seed),
                earlier_epochs=tuple(e for e in self.run.epoch_checkpoints() if e < epoch),
                weights_of=lambda reference: self._weights_of(reference, (path, checkpoint)),
                run_dir=self.run.run_dir, hparams=self.hparams)
            results[name] = analysis.probe_checkpoint(inputs)
            stages = results[name].artifacts.pop("seconds", None)
            seconds |= stages if stages is not None else {name: time.perf_counter() - began}
        self._last_epoch = epoch
        return CheckpointOutcome(path, epoch, results, seconds)
