"""Probe the checkpoints of one run through a list of analyses: a loop over checkpoints around
one :class:`~attnconv_pl.analyses.session.ProbingSession`.

For each checkpoint, in epoch order: load its weights, then let the session run every analysis
on it (:meth:`~attnconv_pl.analyses.base.Analysis.probe_checkpoint`). The shared settings are the
run's ``probing:`` section (for a run made before it, the shared fields of its ``dynamics:``
section; for a checkpoint without a run directory, the seed saved in its callback state), and each
analysis's settings the run's section of its name, both with the user's overrides; so with no
overrides the numbers equal the ones the run logged: the dynamics analysis captures the probe set
exactly as ``callbacks.FeatureDynamics`` does. Input sets are loaded only when an analysis asks
for them, and shared between analyses and runs.
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

from attnconv_pl.analyses import Analysis
from attnconv_pl.analyses.base import AnalysisResult
from attnconv_pl.analyses.dynamics import DynamicsSettings
from attnconv_pl.analyses.session import (
    LEGACY_SECTION,
    SHARED_FIELDS,
    ProbingSession,
    ProbingSettings,
    probing_settings_of,
    settings_for,
)
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


def saved_settings(name: str, run_config: dict[str, Any], checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The section of analysis ``name`` in the run's config (for ``dynamics`` without a run config,
    the layers saved in its callback state), without the shared settings that section held
    before the ``probing:`` section existed."""
    if name in run_config:
        saved = dict(run_config[name] or {})
    elif name == LEGACY_SECTION:
        state = callback_state(checkpoint)
        saved = {"layers": state["layers"]} if state.get("layers") else {}
    else:
        saved = {}
    return {key: value for key, value in saved.items() if not (name == LEGACY_SECTION and key in SHARED_FIELDS)}


def run_probing_settings(run_config: dict[str, Any], checkpoint: dict[str, Any], overrides: dict[str, Any],
                         source: Path) -> ProbingSettings:
    """The run's probing settings (its config's ``probing:`` section, or the shared settings its
    ``dynamics:`` section held before; without a run config, the seed saved in the callback state)
    with ``overrides``.

    Raises:
        ProbeInputError: a value is not a valid setting.
    """
    config = run_config or {LEGACY_SECTION: {"seed": callback_state(checkpoint).get("seed")}}
    try:
        return probing_settings_of(config, overrides)
    except (TypeError, ValueError) as error:
        raise ProbeInputError(f"the probing settings of {source} are not valid ({error}); check the probing "
                              "section of its config.yaml and the options given") from error


class RunProber:
    """Probes the checkpoints of one run, in epoch order, through a list of analyses.

    Build it with :meth:`open` (reads the first checkpoint, builds the model and the analyses),
    then call :meth:`probe` on each checkpoint of the run.

    Attributes:
        session: the run's probing session (its shared settings, device, precision and input sets).
        analyses: the analyses by name, in the order they run.
        probe_settings: the dynamics settings of the run (the dynamics analysis's when it runs),
            the shared fields filled in: they describe the probe set.
        layers: the dynamics analysis's layers in depth order ([] without it).
        hparams: the model's hyper-parameters.
        data_class_path: the data module the run was trained on ("" when unknown).
        run_config: the run's ``config.yaml`` ({} without a run directory).
    """

    def __init__(self, run: RunCheckpoints, module, first: tuple[Path, dict[str, Any]], session: ProbingSession,
                 analyses: dict[str, Analysis], probe_settings: DynamicsSettings, run_config: dict[str, Any],
                 data_class_path: str, model_seconds: float) -> None:
        self.run = run
        self.module = module
        self.hparams = dict(module.hparams)
        self.session = session
        self.analyses = analyses
        self.probe_settings = probe_settings
        self.run_config = run_config
        self.data_class_path = data_class_path
        dynamics = analyses.get("dynamics")
        self.layers: list[str] = list(dynamics.layers) if dynamics is not None else []
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
            choice: the data to probe on (``--data``); its split replaces the probe split (``probing.probe_split``).
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
        module = build_module(checkpoint, path, trusted_arch).to(device).eval()
        model_seconds = time.perf_counter() - opened
        run_config = read_run_config(run.run_dir)
        source = run.run_dir or path
        shared = run_probing_settings(run_config, checkpoint, {**(probing or {}), **(
            {"probe_split": choice.split} if choice.split else {})}, source)
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

        trainer = run_config.get("trainer") or {}
        session = ProbingSession(shared, load_inputs, device,
                                 autocast=forward_context(shared.precision or trainer.get("precision", "32-true"),
                                                          device),
                                 max_epochs=trainer.get("max_epochs"), run_dir=run.run_dir, hparams=hparams)
        built: dict[str, Analysis] = {}
        for name, overrides in analyses.items():
            try:
                settings = settings_for(name, saved_settings(name, run_config, checkpoint), overrides)
            except ValueError as error:
                raise ProbeInputError(f"the {name} settings of {source} are not valid ({error}); check the {name} "
                                      "section of its config.yaml and the options given") from error
            try:
                built[name] = session.build(name, settings, module.model)
            except ValueError as error:
                raise ProbeInputError(f"run {run.name}, analysis {name}: {error}") from error
        probe_settings = built["dynamics"].settings if "dynamics" in built else shared.fill(
            settings_for(LEGACY_SECTION, saved_settings(LEGACY_SECTION, run_config, checkpoint), {}))
        return cls(run, module, (path, checkpoint), session, built, probe_settings, run_config, class_path,
                   model_seconds)

    @property
    def probe_set(self) -> Optional[ProbeSet]:
        """The dynamics probe set (None when dynamics did not run or loaded none yet)."""
        settings = self.probe_settings
        key = (settings.probe_split, settings.probe_size, settings.seed)
        return self.session.input_sets.get(key) if "dynamics" in self.analyses else None

    @property
    def data_seconds(self) -> float:
        """Seconds spent loading input sets."""
        return self.session.data_seconds

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
        probed = self.session.run(epoch, self.module.model, self.analyses,
                                  earlier_epochs=tuple(e for e in self.run.epoch_checkpoints() if e < epoch),
                                  weights_of=lambda reference: self._weights_of(reference, (path, checkpoint)),
                                  on_step=on_step)
        seconds |= probed.seconds
        self._last_epoch = epoch
        return CheckpointOutcome(path, epoch, probed.results, seconds)
