"""The probing session: what every analysis of a run shares, :class:`ProbingSettings` (the
``probing:`` section of the configs: the seed that draws the input sets and every random choice, the
batch size of the forward passes, the split and size of the probe set, the precision of the
capture), and :class:`ProbingSession`, which builds the analyses for a model, owns the input sets
and runs the analyses for an epoch, for the training callbacks, ``probe.py`` and the notebook API.

An analysis's own settings may name any of these fields; left at None there (the default) they
are the session's. Runs and configs made before the ``probing:`` section kept them in the
``dynamics:`` section: :func:`probing_settings_of` reads them from there.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from attnconv_pl.analyses.base import Analysis, AnalysisResult, CheckpointInputs, LabelledInputs, check_field_types

if TYPE_CHECKING:
    import torch
    from torch import nn

SHARED_FIELDS = ("seed", "batch_size", "probe_split", "probe_size")
"""The fields of :class:`ProbingSettings` an analysis's settings may also hold (None there: the
session's value)."""

LEGACY_SECTION = "dynamics"
"""The config section that held the shared fields before the ``probing:`` section existed."""

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")


@dataclass(frozen=True)
class ProbingSettings:
    """What every analysis of a run shares, with its defaults: the ``probing:`` section of the
    configs (``--probing.seed``, ...), of ``probe.py`` and of ``api.probe_model``.

    Args:
        seed: draws every input set (the probe set, an analysis's train and eval inputs), the
            random projections and every stochastic probe.
        batch_size: inputs per forward pass of the capture and of every analysis.
        probe_split: the split the probe set is drawn from (un-augmented).
        probe_size: inputs of the probe set (all of the split when it is smaller).
        precision: the precision of the capture and of every analysis's forward passes: ``32-true``,
            ``16-mixed`` or ``bf16-mixed`` autocast; default (None): the run's training precision.
    """

    seed: int = 0
    batch_size: int = 256
    probe_split: Literal["train", "val", "test"] = "val"
    probe_size: int = 1000
    precision: Optional[Literal["32-true", "16-mixed", "bf16-mixed"]] = None

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("batch_size", "probe_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def fill(self, settings: Any) -> Any:
        """``settings`` (an analysis's settings dataclass) with each of its :data:`SHARED_FIELDS`
        that is None set to this session's value."""
        shared = {name: getattr(self, name) for name in SHARED_FIELDS
                  if name in getattr(type(settings), "__dataclass_fields__", {}) and getattr(settings, name) is None}
        return dataclasses.replace(settings, **shared) if shared else settings


def check_shared_fields(settings: Any) -> None:
    """Check the :data:`SHARED_FIELDS` an analysis's settings give (those not None) by the rules of
    :class:`ProbingSettings`, so every analysis refuses a bad value with the same message.

    Raises:
        ValueError: the first shared field that is not a valid setting.
    """
    fields = getattr(type(settings), "__dataclass_fields__", {})
    ProbingSettings(**{name: getattr(settings, name) for name in SHARED_FIELDS
                       if name in fields and getattr(settings, name) is not None})


def probing_settings_of(config: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None) -> ProbingSettings:
    """The probing settings of a run's config (its ``probing:`` section; for a config made before
    that section existed, the shared fields its ``dynamics:`` section held), with ``overrides``.

    Raises:
        ValueError / TypeError: a value that is not a valid setting.
    """
    values = {key: value for key, value in dict(config.get(LEGACY_SECTION) or {}).items()
              if key in SHARED_FIELDS and value is not None}
    values.update({key: value for key, value in dict(config.get("probing") or {}).items() if value is not None})
    values.update(overrides or {})
    names = set(ProbingSettings.__dataclass_fields__)
    return ProbingSettings(**{key: value for key, value in values.items() if key in names})


def settings_for(name: str, saved: Mapping[str, Any], overrides: Mapping[str, Any]) -> Any:
    """The settings dataclass of analysis ``name``: its ``saved`` values (a run's config section,
    whose keys it lacks, e.g. a callback's ``enabled``, are ignored) with ``overrides`` (every key a
    field) applied; the one path by which every driver builds an analysis's settings.

    Raises:
        ValueError: an unknown analysis, an override naming no field (the message lists the
            fields), or a value the settings refuse.
    """
    from attnconv_pl.analyses import load_analysis

    settings_type = load_analysis(name).settings_type
    fields = settings_type.__dataclass_fields__
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"{name} has no setting(s) {', '.join(unknown)}; its settings are: {', '.join(fields)}")
    values = {key: value for key, value in {**dict(saved or {}), **dict(overrides)}.items() if key in fields}
    try:
        return settings_type(**values)
    except TypeError as error:
        raise ValueError(str(error)) from error


@dataclass
class SessionEpoch:
    """What one run of the session's analyses gave for one epoch: each analysis's result (by name,
    in the order they ran) and the seconds of each stage (an analysis's own stages when it reports
    them in its artifact ``seconds``, else one stage named after it)."""

    epoch: int
    results: dict[str, AnalysisResult]
    seconds: dict[str, float]


class ProbingSession:
    """One run's probing: builds the analyses for a model with the shared settings filled in,
    owns the input sets (each loaded once, shared by every analysis) and runs analyses for an
    epoch. The training callbacks, the offline prober (``probe.py``) and ``api.probe_model`` each
    drive one; only how inputs are loaded and where the model runs differ between them.

    Args:
        settings: the shared settings.
        load_inputs: ``load_inputs(split, size, seed)``: up to ``size`` inputs of ``split`` drawn by
            ``seed`` (called once per distinct request).
        device: where the model runs.
        autocast: a context-manager factory for the forward passes (None: float32).
        max_epochs: the run's planned epochs (None when unknown), for epoch schedules.
        run_dir: the run directory, for analyses that read the run's files (None: none).
        hparams: the model's hyper-parameters.
    """

    def __init__(self, settings: ProbingSettings, load_inputs: Callable[[str, int, int], LabelledInputs],
                 device: torch.device, autocast: Optional[Callable[[], AbstractContextManager]] = None,
                 max_epochs: Optional[int] = None, run_dir: Optional[Path] = None,
                 hparams: Optional[Mapping[str, Any]] = None) -> None:
        self.settings = settings
        self.device = device
        self.autocast = autocast
        self.max_epochs = max_epochs
        self.run_dir = run_dir
        self.hparams = dict(hparams or {})
        self.input_sets: dict[tuple[str, int, int], LabelledInputs] = {}
        self.data_seconds = 0.0
        self._load_inputs = load_inputs

    def build(self, name: str, settings: Any, model: nn.Module) -> Analysis:
        """Analysis ``name`` of ``model`` with ``settings`` (its shared fields left at None filled
        from the session's).

        Raises:
            ValueError: the model lacks what the analysis needs (the message says what).
        """
        from attnconv_pl.analyses import load_analysis

        return load_analysis(name).for_model(self.settings.fill(settings), model)

    def inputs(self, split: str, size: int, seed: int) -> LabelledInputs:
        """Up to ``size`` inputs of ``split`` drawn by ``seed``, loaded once."""
        key = (split, size, seed)
        if key not in self.input_sets:
            started = time.perf_counter()
            self.input_sets[key] = self._load_inputs(split, size, seed)
            self.data_seconds += time.perf_counter() - started
        return self.input_sets[key]

    def checkpoint_inputs(self, analysis: Analysis, epoch: int, model: nn.Module, earlier_epochs: tuple[int, ...] = (),
                          weights_of: Optional[Callable[[int], AbstractContextManager]] = None) -> CheckpointInputs:
        """What ``analysis`` gets at ``epoch``: the model, the session's device, precision and
        input sets, drawn by the analysis's seed and batched by its batch size."""
        seed = getattr(analysis.settings, "seed", None)
        seed = self.settings.seed if seed is None else seed
        batch_size = getattr(analysis.settings, "batch_size", None) or self.settings.batch_size
        return CheckpointInputs(
            epoch=epoch, model=model, device=self.device, autocast=self.autocast, seed=seed, batch_size=batch_size,
            max_epochs=self.max_epochs, inputs=lambda split, size: self.inputs(split, size, seed),
            earlier_epochs=earlier_epochs, weights_of=weights_of, run_dir=self.run_dir, hparams=self.hparams)

    def run(self, epoch: int, model: nn.Module, analyses: Mapping[str, Analysis], earlier_epochs: tuple[int, ...] = (),
            weights_of: Optional[Callable[[int], AbstractContextManager]] = None,
            on_step: Optional[Callable[[str], None]] = None) -> SessionEpoch:
        """Run ``analyses`` (by name, in order) on ``model`` at ``epoch`` (completed epochs);
        ``on_step`` (progress) is called with each name before it runs."""
        results: dict[str, AnalysisResult] = {}
        seconds: dict[str, float] = {}
        for name, analysis in analyses.items():
            if on_step is not None:
                on_step(name)
            began = time.perf_counter()
            results[name] = analysis.probe_checkpoint(
                self.checkpoint_inputs(analysis, epoch, model, earlier_epochs, weights_of))
            stages = results[name].artifacts.pop("seconds", None)
            seconds |= stages if stages is not None else {name: time.perf_counter() - began}
        return SessionEpoch(epoch, results, seconds)
