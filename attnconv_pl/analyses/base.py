"""What every analysis is: frozen settings, the metrics it declares, and a runner that returns
``{(layer, metric): value}`` plus artifacts.

An analysis is four things, each in its place (``docs/writing-an-analysis.md`` walks through one):

- its maths: pure functions in ``attnconv_pl/probes/`` (tensors in, numbers out);
- its settings: one frozen dataclass, the single source of its defaults (the callback, the
  YAML config and ``probe.py``'s options are derived from it);
- its runner: a subclass of :class:`Analysis` in ``attnconv_pl/analyses/<name>.py`` that says
  what it needs, runs the maths and declares its metrics (:class:`MetricFamily`);
- its report section: ``attnconv_pl/reports/sections/<name>.py``.
"""

from __future__ import annotations

import inspect
import re
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

Values = dict[tuple[str, str], float]
"""``{(layer, metric): value}``; run-level numbers have the layer ``""``."""


@dataclass(frozen=True)
class MetricFamily:
    """A family of metrics an analysis computes: one section of the report.

    Attributes:
        key: short name (``compactness``), the report section's anchor.
        title: the section's title.
        pattern: regular expression matched by the whole metric name.
    """

    key: str
    title: str
    pattern: str

    def matches(self, metric: str) -> bool:
        return re.fullmatch(self.pattern, metric) is not None


@dataclass
class AnalysisResult:
    """What one analysis gave for one epoch (or one run).

    Attributes:
        epoch: completed training epochs (0 = at initialisation).
        values: ``{(layer, metric): value}`` in computation order.
        artifacts: anything else the report or the next epoch needs (diagrams, matrices).
    """

    epoch: int
    values: Values = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[tuple[int, str, str, float]]:
        """``(epoch, layer, metric, value)`` rows (those of ``dynamics.csv``) in computation order."""
        return [(self.epoch, layer, metric, value) for (layer, metric), value in self.values.items()]


@dataclass(frozen=True)
class LabelledInputs:
    """Inputs of the run's data: ``images`` (N, C, H, W) float32 on CPU (normalised as in
    training), ``labels`` (N,) and their ``indices`` (N,) in ``split`` of ``dataset``;
    ``own_data`` when they come from the run's own data module (labels then mean its classes)."""

    images: Tensor
    labels: Tensor
    indices: Tensor
    dataset: str
    split: str
    own_data: bool


@dataclass(frozen=True)
class CheckpointInputs:
    """What one checkpoint offers an analysis run offline (``probe.py``), in epoch order.

    Attributes:
        epoch: completed training epochs of the checkpoint (0 = at initialisation).
        model: the network with the checkpoint's weights, in eval mode, on ``device``.
        device: where the model runs.
        autocast: a context-manager factory reproducing the run's precision.
        seed: the analysis's own ``settings.seed`` when it sets one, else the probing session's
            (``probing.seed``): draws the input sets and any randomness.
        batch_size: images per forward pass (the analysis's own ``settings.batch_size`` when it
            sets one, else ``probing.batch_size``).
        max_epochs: the run's planned epochs (None when unknown), for epoch schedules.
        inputs: ``inputs(split, size)``: up to ``size`` inputs of ``split`` of the run's data
            (or of ``probe.py --data``), drawn by ``seed`` as the training callbacks draw their
            probe sets (``select_probe_indices`` over the un-augmented split); loaded once.
        earlier_epochs: the epochs of the run's numbered checkpoints before this one.
        weights_of: ``with weights_of(epoch):`` the model holds that earlier checkpoint's
            weights inside the block (this checkpoint's again after it).
        run_dir: the run directory (``runs/<experiment>/<run_id>``) when there is one, for
            analyses that read the run's own files (``metrics.csv``); None for a bare checkpoint
            or a network given in Python.
        hparams: the model's hyper-parameters (``num_classes``, ``label_smoothing``, ...; {}
            when unknown).
    """

    epoch: int
    model: nn.Module
    device: torch.device
    autocast: Callable[[], AbstractContextManager]
    seed: int
    batch_size: int
    max_epochs: Optional[int]
    inputs: Callable[[str, int], LabelledInputs]
    earlier_epochs: tuple[int, ...] = ()
    weights_of: Optional[Callable[[int], AbstractContextManager]] = None
    """Offline; during training (``callbacks.ModelProbing``) only at the first probe after a resume
    (the run's checkpoints of the epochs it probed), else None and ``earlier_epochs`` ()."""
    run_dir: Optional[Path] = None
    hparams: Mapping[str, Any] = field(default_factory=dict)


class Analysis(ABC):
    """A family of measurements, built from its settings (a frozen dataclass instance).

    Subclasses set :attr:`name`, :attr:`settings_type` and :attr:`families`, and implement
    :meth:`run`, whose keyword arguments are what the analysis needs (a snapshot of captured
    activations, a model and inputs, a run's files): the callers pass exactly those. An
    analysis ``probe.py`` can run on checkpoints also implements :meth:`probe_checkpoint`, and
    one that depends on the model (its layers) overrides :meth:`for_model`.
    """

    name: ClassVar[str]
    settings_type: ClassVar[type]
    families: ClassVar[tuple[MetricFamily, ...]] = ()
    runs_live: ClassVar[bool] = True
    """Whether an analysis that runs on checkpoints also gets a training callback
    (``callbacks.ModelProbing``, ``--<name>.enabled true``); False for one that runs during
    training its own way (dynamics, on stored snapshots) or reads files training writes."""
    reads_run_files: ClassVar[bool] = False
    """Whether its numbers come from a run directory's files (``CheckpointInputs.run_dir``)
    rather than the network: such an analysis has nothing to say about a network given in Python."""

    def __init__(self, settings: Any) -> None:
        """Keep ``settings``; shared fields it leaves at None (seed, batch size, probe split and
        size) take the defaults of the probing session's settings (a session fills its own first:
        :meth:`~attnconv_pl.analyses.session.ProbingSession.build`)."""
        from attnconv_pl.analyses.session import ProbingSettings

        if not isinstance(settings, self.settings_type):
            raise TypeError(f"{type(self).__name__} takes {self.settings_type.__name__}, got {type(settings).__name__}")
        self.settings = ProbingSettings().fill(settings)

    @abstractmethod
    def run(self, epoch: int, **needs: Any) -> AnalysisResult:
        """Every number of ``epoch``."""

    @classmethod
    def for_model(cls, settings: Any, model: nn.Module) -> Analysis:
        """The analysis of ``model`` (default: ``cls(settings)``; analyses that pick layers
        resolve them here).

        Raises:
            ValueError: the model lacks what the analysis needs (the message says what).
        """
        return cls(settings)

    def probe_checkpoint(self, checkpoint: CheckpointInputs) -> AnalysisResult:
        """Every number of one checkpoint, offline; checkpoints come in epoch order.

        Raises:
            NotImplementedError: the analysis does not run on checkpoints.
        """
        raise NotImplementedError(f"the {self.name} analysis does not run on checkpoints")

    @classmethod
    def family_of(cls, metric: str) -> MetricFamily | None:
        """The family of one of this analysis's metrics, None when it declares none that matches."""
        return next((family for family in cls.families if family.matches(metric)), None)


def is_scheduled_epoch(epoch: int, every_n_epochs: int, max_epochs: Optional[int]) -> bool:
    """Whether epoch ``epoch`` (completed epochs, 0 = at init) is a probed or checkpointed one:
    epoch 0, every ``every_n_epochs``-th epoch and the last epoch are."""
    return epoch == 0 or epoch % every_n_epochs == 0 or (max_epochs is not None and epoch == max_epochs)


def settings_help(settings_type: type) -> dict[str, str]:
    """``{field: its description}`` from the ``Args:`` section of a settings dataclass's
    docstring (continuation lines joined), for command-line help."""
    lines = inspect.cleandoc(settings_type.__doc__ or "").split("Args:\n", 1)[-1].splitlines()
    described: dict[str, str] = {}
    name = None
    for line in lines:
        entry = re.match(r"^    (\w+): (.*)$", line)
        if entry:
            name, described[entry.group(1)] = entry.group(1), entry.group(2)
        elif name is not None and line.startswith("        "):
            described[name] += " " + line.strip()
    return described


def check_field_types(settings: Any) -> None:
    """Check a settings dataclass instance against its annotations (an ``Optional`` field may
    also be None): ``Literal`` fields hold one of their values, ``int`` fields an int (not a
    bool), ``bool`` fields a bool, ``float`` fields a number (a config file or an override can
    hold anything).

    Raises:
        ValueError: the first field that does not fit, with what it must be.
    """
    for name, annotation in typing.get_type_hints(type(settings)).items():
        value = getattr(settings, name)
        arguments = typing.get_args(annotation)
        if typing.get_origin(annotation) is typing.Union and type(None) in arguments:
            if value is None:
                continue
            annotation = next(argument for argument in arguments if argument is not type(None))
        if typing.get_origin(annotation) is typing.Literal:
            allowed = typing.get_args(annotation)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
        elif annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        elif annotation is bool and not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        elif annotation is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{name} must be a number, got {value!r}")


def settings_from(settings_type: type, values: Mapping[str, Any]) -> Any:
    """``settings_type(**values)`` keeping only its fields (a config section may hold more keys,
    e.g. the callback's ``enabled``)."""
    names = set(settings_type.__dataclass_fields__)
    return settings_type(**{key: value for key, value in values.items() if key in names})
