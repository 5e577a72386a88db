"""Probe the checkpoints of one run through the training callback's own pipeline.

For each checkpoint, in epoch order: load its weights, run the probe set through the network
(``capture_probe_images``), round the points to the snapshot dtype (``round_to_dtype``) and
probe them with the run's :class:`~attnconv_pl.analyses.dynamics.Dynamics`: what
``callbacks.FeatureDynamics`` does after an epoch, with the same :class:`DynamicsSettings`, built
from the ``dynamics`` section of the run's ``config.yaml`` (plus the user's overrides). So with no
overrides the numbers equal the ones the run logged.

``drift_prev_*`` is measured against the run's preceding numbered checkpoint and
``drift_init_*`` against ``epoch=000.ckpt``; when those were not among the checkpoints to probe,
they are captured (not probed) as references.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn

from attnconv_pl.capture import Activations, resolve_layers
from attnconv_pl.checkpoints import (ProbeInputError, RunCheckpoints, build_module, callback_state, checkpoint_epoch,
                                     data_config, datamodule_classes, load_weights, read_checkpoint, read_run_config)
from attnconv_pl.data import DATAMODULES, SPLITS, ClassificationDataModule, create_datamodule
from attnconv_pl.analyses.base import AnalysisResult, settings_from
from attnconv_pl.analyses.dynamics import Dynamics, DynamicsSettings
from attnconv_pl.analyses.robustness import Robustness, RobustnessSettings
from attnconv_pl.capture import Projector
from attnconv_pl.capture.probe_set import capture_probe_images, load_probe_images, round_to_dtype, select_probe_indices

MIXED_PRECISIONS = ("16-mixed", "bf16-mixed")
FLOAT32_PRECISIONS = ("32", "32-true")


@dataclass(frozen=True)
class DataChoice:
    """The data ``--data`` and ``--data-dir`` ask for; None fields mean "as the run was trained".

    Attributes:
        dataset: a name of ``attnconv_pl.data.DATAMODULES`` (another dataset than the run's).
        split: ``train``, ``val`` or ``test``.
        data_dir: folder holding the dataset's files.
    """

    dataset: Optional[str] = None
    split: Optional[str] = None
    data_dir: Optional[str] = None

    @classmethod
    def parse(cls, spec: Optional[str], data_dir: Optional[str] = None) -> DataChoice:
        """``SPLIT``, ``NAME`` or ``NAME:SPLIT`` (e.g. ``test``, ``cifar10``, ``digits:test``).

        Raises:
            ProbeInputError: an unknown dataset name or split.
        """
        if not spec:
            return cls(data_dir=data_dir)
        if ":" in spec:
            name, split = spec.split(":", 1)
        else:
            name, split = (None, spec) if spec in SPLITS else (spec, "")
        if name is not None and name not in DATAMODULES:
            raise ProbeInputError(
                f"--data {spec}: unknown dataset {name!r}; give SPLIT, NAME or NAME:SPLIT with NAME one of "
                f"{', '.join(sorted(DATAMODULES))} and SPLIT one of {', '.join(SPLITS)}")
        if split and split not in SPLITS:
            raise ProbeInputError(f"--data {spec}: unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return cls(dataset=name, split=split or None, data_dir=data_dir)


@dataclass(frozen=True)
class ProbeSet:
    """The probe set of a run: images (N, C, H, W) float32, labels (N,) and their positions
    (N,) in the split, all on CPU; ``own_data`` when it comes from the run's training data."""

    images: Tensor
    labels: Tensor
    indices: Tensor
    dataset: str
    split: str
    own_data: bool


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


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ProbeInputError: CUDA asked for but not available, or an unknown device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ProbeInputError(f"--device {name}: not a device ({error}); use auto, cpu or cuda[:N]") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeInputError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return device


def forward_context(precision: Any, device: torch.device) -> Optional[Callable[[], AbstractContextManager]]:
    """The autocast the run trained (and was probed) under: Lightning's mixed-precision
    context for ``16-mixed`` / ``bf16-mixed``, None (float32) otherwise."""
    if str(precision) in MIXED_PRECISIONS:
        from lightning.pytorch.plugins.precision import MixedPrecision

        return MixedPrecision(str(precision), device.type).forward_context
    return None


def dynamics_settings(run_config: dict[str, Any], checkpoint: dict[str, Any], overrides: dict[str, Any],
                      source: Path) -> DynamicsSettings:
    """The :class:`DynamicsSettings` the run probed with (its config's ``dynamics`` section; for a
    checkpoint without a run directory, the layers and seed saved in its callback state), with
    ``overrides`` applied.

    Raises:
        ProbeInputError: the config or an override is not a valid setting.
    """
    if "dynamics" in run_config:
        saved = dict(run_config["dynamics"] or {})
    else:
        state = callback_state(checkpoint)
        saved = {key: state[key] for key in ("layers", "seed") if state.get(key) is not None}
    try:
        return settings_from(DynamicsSettings, {**saved, **overrides})
    except (TypeError, ValueError, KeyError) as error:
        raise ProbeInputError(
            f"the probe settings of {source} are not valid ({error}); check the dynamics section of its "
            "config.yaml and the options given") from error


def build_datamodule(class_path: str, init_args: dict[str, Any], choice: DataChoice,
                     model_hparams: dict[str, Any]) -> ClassificationDataModule:
    """The data module to draw the probe set from: the run's (``class_path``, ``init_args`` as
    :func:`~attnconv_pl.checkpoints.data_config` returns them: a registered data module and
    plain values), or ``choice.dataset`` built for the model's input shape (``image_size`` /
    ``in_chans`` when the data module takes them) with the run's ``data_dir``;
    ``choice.data_dir`` overrides it.

    Raises:
        ProbeInputError: the data module cannot be built, or its images do not have the
            model's input shape.
    """
    data_dir = {"data_dir": choice.data_dir} if choice.data_dir else {}
    try:
        if choice.dataset is None:
            datamodule = datamodule_classes()[class_path](**{**init_args, **data_dir})
        else:
            parameters = inspect.signature(DATAMODULES[choice.dataset].__init__).parameters
            shape = {"image_size": model_hparams.get("image_size"), "in_chans": model_hparams.get("in_chans")}
            kwargs = {key: value for key, value in {**shape, "download": False}.items() if key in parameters}
            if "data_dir" in init_args:
                kwargs["data_dir"] = init_args["data_dir"]
            datamodule = create_datamodule(choice.dataset, **{**kwargs, **data_dir})
    except (TypeError, ValueError) as error:
        raise ProbeInputError(f"cannot build the data module {choice.dataset or class_path}: {error}") from error
    expected = (model_hparams.get("in_chans"), model_hparams.get("image_size"))
    if choice.dataset is not None and (datamodule.in_chans, datamodule.image_size) != expected:
        raise ProbeInputError(
            f"--data {choice.dataset}: its images are {datamodule.in_chans}x{datamodule.image_size}x"
            f"{datamodule.image_size} but the model takes {expected[0]}x{expected[1]}x{expected[1]}; probe "
            "with a dataset of the model's input shape")
    return datamodule


def dataset_name(datamodule: ClassificationDataModule) -> str:
    """The registry name of a data module (``digits``, ``cifar10``, ...), else its class name."""
    names = {cls: name for name, cls in DATAMODULES.items()}
    return names.get(type(datamodule), type(datamodule).__name__)


def load_probe_set(datamodule: ClassificationDataModule, split: str, size: int, seed: int,
                   own_data: bool) -> ProbeSet:
    """The probe set exactly as the callback draws it: ``select_probe_indices`` over the
    un-augmented split (``eval_dataset`` builds only that split).

    Raises:
        ProbeInputError: the dataset's files are missing (the message says where and how to
            get them) or the split is too small.
    """
    try:
        dataset = datamodule.eval_dataset(split)
        indices = select_probe_indices(len(dataset), size, seed)
    except (FileNotFoundError, ValueError) as error:
        raise ProbeInputError(
            f"the {split} split of {dataset_name(datamodule)} is not available: {error} "
            "(probe.py never downloads; pass --data-dir DIR where the files are)") from error
    images, labels = load_probe_images(dataset, indices)
    return ProbeSet(images, labels, indices, dataset_name(datamodule), split, own_data)


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
                 robustness: Optional[RobustnessSettings] = None, robustness_set: Optional[ProbeSet] = None) -> None:
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
        self.analysis = Dynamics(dynamics, self.layers)
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
             robustness: Optional[RobustnessSettings] = None) -> RunProber:
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
        dynamics = dynamics_settings(run_config, checkpoint, overrides, run.run_dir or path)
        layers = probed_layers(module.model, dynamics.layers, run.name)
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
            key = json.dumps([class_path, init_args, choice, split, size, dynamics.seed, hparams.get("image_size"),
                              hparams.get("in_chans")], sort_keys=True, default=str)
            if key not in cache:
                datamodule = build_datamodule(class_path, init_args, choice, hparams)
                cache[key] = load_probe_set(datamodule, split, size, dynamics.seed, own_data=choice.dataset is None)
            return cache[key]

        probe_set = input_set(dynamics.probe_split, dynamics.probe_size)
        robustness_set = input_set(robustness.split, robustness.size) if robustness is not None else None
        return cls(run, module, (path, checkpoint), layers, dynamics, probe_set, run_config, class_path, device,
                   model_seconds, time.perf_counter() - started, robustness, robustness_set)

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
        """Give the tracker the preceding numbered checkpoint and epoch 0, as the callback had
        them, unless the tracker just probed the preceding one."""
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
        self._restore_references(epoch)
        referenced = time.perf_counter()
        load_weights(self.module, checkpoint, path)
        loaded = time.perf_counter()
        with recorded_outputs(self.module.model) as logits:
            snapshot = self._snapshot()
        captured = time.perf_counter()
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
