"""The probing callback base: everything a per-epoch analysis on captured activations needs
during training, so that one is a settings dataclass, an analysis and a few dozen lines here.

It owns the schedule (epoch 0, every ``every_n_epochs`` and the last), the probe set (drawn by
seed from an un-augmented split, sharded under DDP and gathered back in probe-set order), the
snapshots (one safetensors file per probed epoch, within ``max_snapshot_bytes``), the
background jobs (the analysis runs in a worker thread while training goes on), the pool of
processes an analysis may spread one epoch's work over (:attr:`ProbingCallback.pool`), the rows
of ``dynamics.csv``, the loggers, the messages (printed through the progress bar) and the state
that resume needs. A subclass says which analysis it
runs (:meth:`ProbingCallback.make_analysis`), how it runs on a snapshot
(:meth:`ProbingCallback.analyse`), when the analysis carries state from one epoch to the
next, how that state is restored on resume (:meth:`ProbingCallback.restore`), and, when a logger
deserves more than scalars, what it sends (:meth:`ProbingCallback.log_to`).

The shared settings (seed, batch size, probe split and size, precision) come from the run's
probing session (``callbacks.probing_session``), filled into the analysis's settings at setup.

Longer than 400 lines: schedule, probe set, snapshots, background jobs and resume state are one
life cycle of Lightning hooks around the snapshots, which only this callback stores.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.utils.data import Dataset
from typing_extensions import override

from attnconv_pl.analyses.base import Analysis, AnalysisResult
from attnconv_pl.analyses.probe_pool import ProbePool, resolve_workers
from attnconv_pl.capture import (
    Activations,
    Projector,
    flatten_activations,
    gather_in_probe_order,
    resolve_layers,
    shard_indices,
    unflatten_activations,
)
from attnconv_pl.capture.budget import SnapshotBudget
from attnconv_pl.capture.probe_set import capture_probe_images, load_probe_images, round_to_dtype, select_probe_indices
from attnconv_pl.capture.snapshots import UnreadableSnapshot, load_snapshot, save_snapshot, set_aside, snapshot_path
from attnconv_pl.errors import ConfigError
from attnconv_pl.io.console import say
from attnconv_pl.io.epoch_table import DYNAMICS_FILE, drop_epochs_after, read_rows, write_epochs
from attnconv_pl.offline.checkpoints import first_sentence, load_torch_file
from callbacks._jobs import OrderedJobs
from callbacks._wandb import log_epoch_values
from callbacks.epoch_checkpoint import EpochCheckpoint, checkpoint_name
from callbacks.probing_session import forget_default_session, session_of

COST_METRICS = ("overhead_seconds", "probe_seconds")
"""Run-level rows (empty layer) of every probed epoch: seconds training waited for the probe,
and seconds the analysis took."""


@dataclass
class ProbedEpoch:
    """What one probe job hands back: the numbers and the seconds of each stage
    (``capture``, ``snapshot``, ``probes``, ``write`` and, once logged, ``log``)."""

    result: AnalysisResult
    timing: dict[str, float]


@dataclass
class ResumePlan:
    """What a resume at epoch N does before training goes on (decided on rank zero, sent to
    every rank).

    Attributes:
        written: the probed epochs <= N whose rows are in ``dynamics.csv``.
        recovered: the probed epochs handed to :meth:`ProbingCallback._recover` (analysed again
            when their rows are missing; the last of them and epoch 0 restore the analysis).
        capture: why epoch N is captured again from the weights being resumed, or None.
        recapture: earlier epochs captured again, each from its checkpoint: ``{epoch:
            (checkpoint, why)}``.
        damaged: the epochs among those whose snapshot path holds something unreadable, set
            aside before the capture writes there.
    """

    written: set[int]
    recovered: list[int] = field(default_factory=list)
    capture: Optional[str] = None
    recapture: dict[int, tuple[Path, str]] = field(default_factory=dict)
    damaged: set[int] = field(default_factory=set)


class ProbingCallback(Callback, ABC):
    """Capture chosen layers on a fixed probe set at every scheduled epoch, store the snapshot
    and run an analysis on it; numbers to ``dynamics.csv`` and the loggers.

    At initialisation (epoch 0, before the first step), after every ``every_n_epochs`` training
    epochs and after the last one, the probe set runs through the model in eval mode under the
    trainer's precision; each layer's input and output become points (one per input), stored in
    ``snapshots/epoch=NNN.safetensors`` and analysed. Under DDP each rank captures its shard,
    the shards are gathered in probe-set order, and rank zero analyses and writes. With
    ``background`` training waits only for the capture and the snapshot file.

    Register it before ``EpochCheckpoint``: the checkpoint of an epoch is then written after its
    snapshot and lists the epoch as probed. On resume at epoch N every probed epoch <= N is
    completed (rows of later epochs dropped; an epoch without rows analysed again from its
    snapshot) and drift goes on against the last of them and epoch 0. A snapshot this needs that
    is missing or unreadable (truncated, corrupt, another epoch's or probe set's, a folder in
    its place) is captured again: epoch N's from the weights being resumed, an earlier epoch's
    from its ``epoch=NNN.ckpt``; an unreadable one is kept beside as ``*.unreadable``. When that
    checkpoint is gone too, the resume stops with a :class:`ConfigError` before changing anything.

    Args:
        enabled: ``False`` turns the callback into a no-op.
        settings: the analysis's settings; they must have the fields ``layers``, ``probe_size``,
            ``probe_split``, ``representation``, ``project_dim``, ``capture_inputs``,
            ``every_n_epochs``, ``seed``, ``snapshot_dtype``, ``max_snapshot_bytes``,
            ``batch_size``, ``background`` and the method ``is_scheduled(epoch, max_epochs)``;
            ``num_workers`` (optional) sizes :attr:`pool`. Those of them left at None (seed,
            batch size, probe split and size) are the probing session's, from setup on.

    Attributes:
        pool: worker processes for the analysis (:class:`attnconv_pl.analyses.probe_pool.ProbePool`),
            built at setup with ``settings.num_workers`` processes (default: the CPU cores
            left free by the training processes, one each, and their data loaders' workers);
            they start at the first probe that uses them,
            on rank zero only, and stop at teardown.
    """

    prefix = "probes"
    """Name in messages and in the worker thread's name."""

    def __init__(self, enabled: bool, settings: Any) -> None:
        self.enabled = enabled
        self.settings = settings
        self.projector: Optional[Projector] = None
        self.autocast: Any = None
        self.layers: list[str] = []
        self.probe_indices: Optional[torch.Tensor] = None
        self.probed_epochs: list[int] = []  # captured, snapshot written; rows may still be computing
        self.timings: list[dict[str, float]] = []  # per probe on rank zero: epoch and seconds per stage
        self._images: Optional[torch.Tensor] = None
        self._labels: Optional[torch.Tensor] = None
        self._positions: Optional[torch.Tensor] = None
        self._dataset: Optional[Dataset] = None
        self._shard = (0, 1)  # (rank, world size) of this process
        self.analysis: Optional[Analysis] = None
        self.max_epochs: Optional[int] = None
        self.jobs = OrderedJobs(background=settings.background, name=self.prefix)
        self.pool = ProbePool(workers=1)

    # ------------------------------------------------------------------ what a subclass says
    @abstractmethod
    def make_analysis(self, layers: list[str]) -> Analysis:
        """The analysis of the run, for the resolved ``layers`` in depth order (give it
        :attr:`pool` when it can spread its work)."""

    @abstractmethod
    def analyse(self, epoch: int, snapshot: Activations) -> AnalysisResult:
        """Every number of ``epoch`` from its snapshot (runs in the worker thread, in epoch order)."""

    def restore(self, previous: Optional[Activations], initial: Optional[Activations]) -> None:
        """Resume: give the analysis the snapshots of the previous probed epoch and of epoch 0
        (nothing to do for an analysis without state across epochs)."""

    def owns(self, metric: str) -> bool:
        """Whether rows of ``metric`` in ``dynamics.csv`` are this callback's (its analysis's
        metrics and the cost rows), which it replaces and drops; other analyses' rows stay."""
        return metric in COST_METRICS or type(self.analysis).family_of(metric) is not None

    def log_to(self, logger: Logger, result: AnalysisResult, step: int) -> None:
        """Send one epoch's numbers to ``logger``, against ``epoch``, as ``<prefix>/<layer>/<metric>``."""
        log_epoch_values(logger, self.prefix, result, step)

    # ------------------------------------------------------------------ setup and state
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.enabled:
            return
        session = session_of(trainer, pl_module)
        self.settings = session.settings.fill(self.settings)
        self.projector = Projector(project_dim=self.settings.project_dim, seed=self.settings.seed)
        self.layers = self.probed_layers(pl_module)
        loader_workers = getattr(trainer.datamodule, "num_workers", 0) or 0
        # each training process keeps a core of its own: on 2 cores a pool of 2 beside training
        # made a 1000-input ResNet-18 run slower than the probes in-process (bench/probe_scale.py)
        self.pool = ProbePool(resolve_workers(getattr(self.settings, "num_workers", None),
                                              claimed=(1 + loader_workers) * trainer.num_devices))
        self.analysis = self.make_analysis(self.layers)
        self.max_epochs = trainer.max_epochs
        split, size, seed = self.settings.probe_split, self.settings.probe_size, self.settings.seed
        dataset = trainer.datamodule.eval_dataset(split)
        if self.probe_indices is None:
            self.probe_indices = select_probe_indices(len(dataset), size, seed)
        if len(self.probe_indices) < size:
            rank_zero_info(f"{self.prefix}: the {split} split has {len(dataset)} inputs; "
                           f"the probe set uses all of them (probe_size={size})")
        self._dataset, self._shard = dataset, (trainer.global_rank, trainer.world_size)
        self._load_probe_images(*self._shard)

    def probed_layers(self, pl_module: pl.LightningModule) -> list[str]:
        """The layers of ``pl_module.model`` this callback probes: ``settings.layers``, or the
        network's own ``probe_layers``.

        Raises:
            ConfigError: the network declares no ``probe_layers`` and the settings name none.
        """
        network = getattr(pl_module, "model", None)
        if not isinstance(network, nn.Module):
            raise ConfigError(f"{self.prefix}: {type(pl_module).__name__} has no network `model` to probe; "
                              f"set --{self.prefix}.enabled false")
        if not self.settings.layers and not hasattr(network, "probe_layers"):
            raise ConfigError(f"{self.prefix}: {type(network).__name__} declares no probe_layers to probe; "
                              f"set --{self.prefix}.enabled false (or name layers with --{self.prefix}.layers)")
        return resolve_layers(network, self.settings.layers or network.probe_layers)

    def _load_probe_images(self, rank: int, world_size: int) -> None:
        """This rank's shard of the probe set's images and labels."""
        self._positions = shard_indices(len(self.probe_indices), rank, world_size)
        self._images, self._labels = load_probe_images(self._dataset, self.probe_indices[self._positions])

    def check_state(self, state: dict[str, Any], layers: list[str], seed: Optional[int] = None) -> None:
        """Refuse to resume a run whose checkpoint probed other layers or with another seed than
        the settings now ask for (``seed``, default the filled settings'): drift would compare
        unrelated snapshots.

        Raises:
            ConfigError: naming the run's own values and the options that give them.
        """
        saved_layers, saved_seed = state.get("layers") or [], state.get("seed")
        seed = self.settings.seed if seed is None else seed
        if saved_seed is not None and saved_seed != seed:
            raise ConfigError(f"{self.prefix}: the run probed with seed {saved_seed}, the config now says "
                              f"{seed}; resume with --probing.seed {saved_seed} "
                              "(or start a new run)")
        if saved_layers and layers and list(saved_layers) != list(layers):
            raise ConfigError(f"{self.prefix}: the run probed layers {list(saved_layers)}, the config now selects "
                              f"{list(layers)}; resume with the run's own --{self.prefix}.layers (or start a new run)")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"probe_indices": None if self.probe_indices is None else self.probe_indices.tolist(),
                "probed_epochs": list(self.probed_epochs), "layers": list(self.layers), "seed": self.settings.seed}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume: the run's own probe set (Lightning calls this after :meth:`setup`, whose probe
        set the saved one replaces) and the epochs probed so far."""
        self.check_state(state_dict, self.layers)
        self.probed_epochs = list(state_dict.get("probed_epochs", []))
        saved = state_dict.get("probe_indices")
        if saved is not None and (self.probe_indices is None or saved != self.probe_indices.tolist()):
            if self.probe_indices is not None:
                rank_zero_warn(f"{self.prefix}: the run's probe set ({len(saved)} inputs) is kept; the probe_size "
                               "and probe_split given now apply to new runs")
            self.probe_indices = torch.tensor(saved, dtype=torch.int64)
            if self._dataset is not None:
                self._load_probe_images(*self._shard)

    # ------------------------------------------------------------------ schedule
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Probe epoch 0 on a fresh start; on a resume at epoch N complete every probed epoch <= N
        (see the class docstring) and continue from the last of them."""
        if not self.enabled:
            return
        epoch = trainer.current_epoch
        scheduled = {epoch} if self.settings.is_scheduled(epoch, trainer.max_epochs) else set()
        due = [e for e in sorted(set(self.probed_epochs) | scheduled) if e <= epoch]
        run_dir = Path(trainer.default_root_dir)
        if trainer.ckpt_path is None:
            if trainer.is_global_zero:
                drop_epochs_after(run_dir / DYNAMICS_FILE, -1, owns=self.owns)
            if epoch in due:
                self._probe(trainer, pl_module, epoch)
            return
        plan, snapshots = self._plan_resume(trainer, run_dir, due, epoch) if trainer.is_global_zero else (None, {})
        plan = trainer.strategy.broadcast(plan)  # every rank takes the same branches and captures
        if isinstance(plan, str):
            raise ConfigError(plan)
        for earlier, (checkpoint, why) in sorted(plan.recapture.items()):
            snapshots[earlier] = self._recapture(trainer, pl_module, earlier, checkpoint, why,
                                                 damaged=earlier in plan.damaged)
        if trainer.is_global_zero:
            drop_epochs_after(run_dir / DYNAMICS_FILE, epoch, owns=self.owns)
            if plan.recovered:
                self.jobs.submit(self._recover, run_dir, plan.recovered, plan.written, snapshots)
        if plan.capture is not None:
            self._announce(trainer, epoch, plan.capture, "the checkpoint", damaged=epoch in plan.damaged)
            self._probe(trainer, pl_module, epoch)

    def _announce(self, trainer: pl.Trainer, epoch: int, why: str, source: str, damaged: bool) -> None:
        """Before ``epoch``'s snapshot is captured again (rank zero): set aside what is at its
        path when ``damaged``, and say why and from where it is captured, in one warning."""
        if not trainer.is_global_zero:
            return
        kept = f"; it is kept as {set_aside(snapshot_path(trainer.default_root_dir, epoch)).name}" if damaged else ""
        rank_zero_warn(f"{self.prefix}: {why}{kept}; capturing it again from {source}")

    def _plan_resume(self, trainer: pl.Trainer, run_dir: Path, due: list[int],
                     epoch: int) -> tuple[ResumePlan | str, dict[int, Activations]]:
        """Rank zero, before anything changes: read the snapshots a resume at ``epoch`` needs
        (of every probed epoch without rows and of the probed epoch before it, of the last
        probed epoch and of epoch 0) and decide how each missing or unreadable one is captured
        again. Returns the plan, or the error message when an earlier epoch's checkpoint is gone
        too, and the snapshots read, by epoch."""
        rows = read_rows(run_dir / DYNAMICS_FILE)[1]
        written = {int(row["epoch"]) for row in rows if self.owns(row["metric"]) and int(row["epoch"]) <= epoch}
        snapshots: dict[int, Activations] = {}
        problems: dict[int, str] = {}
        damaged: set[int] = set()

        def read(probed: int) -> None:
            if probed in snapshots or probed in problems:
                return
            path = snapshot_path(run_dir, probed)
            try:
                snapshots[probed] = load_snapshot(path, epoch=probed, indices=self.probe_indices,
                                                  layers=self.layers)[0]
            except FileNotFoundError:
                problems[probed] = f"epoch {probed} has no snapshot"
            except UnreadableSnapshot as error:
                problems[probed] = f"the snapshot of epoch {probed} is unreadable ({path.name} {error.problem})"
                damaged.add(probed)

        if not due:
            return ResumePlan(written), snapshots
        read(due[-1])
        if 0 in due:
            read(0)
        computed = {e for e in due if e not in written} | ({epoch} & problems.keys())
        for probed in sorted(computed):
            read(probed)
            if due.index(probed):
                read(due[due.index(probed) - 1])
        plan = ResumePlan(written, capture=problems.pop(epoch, None), damaged=damaged)
        plan.recovered = [e for e in due if plan.capture is None or e != epoch]
        folder = next((c.checkpoint_dir(trainer) for c in trainer.callbacks if isinstance(c, EpochCheckpoint)),
                      run_dir / "checkpoints")
        for earlier, why in sorted(problems.items()):
            checkpoint = folder / checkpoint_name(earlier)
            if not checkpoint.is_file():
                return (f"{self.prefix}: {why}, and {checkpoint}, to capture it again from, does not exist: "
                        f"epoch {earlier}'s numbers and the drift against it cannot be completed; put back the "
                        "snapshot or the checkpoint, or start a new run"), snapshots
            plan.recapture[earlier] = (checkpoint, why)
        return plan, snapshots

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if self.enabled and self.settings.is_scheduled(epoch, trainer.max_epochs):
            self._probe(trainer, pl_module, epoch)

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._publish(trainer)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._publish(trainer)
        if self.jobs.pending:
            say(trainer, f"{self.prefix}: waiting for {self.jobs.pending} background "
                         f"probe{'s' if self.jobs.pending > 1 else ''}...")
        self._publish(trainer, wait=True)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.jobs.close()  # the rows of probes already queued still reach dynamics.csv
        self.pool.close()

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.jobs.close()
        self.pool.close()
        forget_default_session(trainer)

    # ------------------------------------------------------------------ one probe
    def _probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        """Capture and store ``epoch``'s snapshot, then queue its analysis (rank zero)."""
        self._publish(trainer)
        stored = self._snapshot(trainer, pl_module, epoch, check_budget=epoch == 0)
        if stored is not None:
            self.jobs.submit(self._compute, Path(trainer.default_root_dir), epoch, *stored)
        if epoch not in self.probed_epochs:
            self.probed_epochs.append(epoch)
        self._publish(trainer)

    def _snapshot(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int,
                  check_budget: bool = False) -> Optional[tuple[Activations, dict[str, float]]]:
        """Capture ``epoch``'s snapshot (a collective) and write it; rank zero gets it back, as
        stored, with the seconds of both stages."""
        started = time.perf_counter()
        snapshot, labels = self._capture(trainer, pl_module)  # collective: every rank
        captured = time.perf_counter()
        if check_budget:
            self._check_budget(snapshot, trainer.max_epochs)
        if not trainer.is_global_zero:
            return None
        dtype = self.settings.torch_snapshot_dtype
        snapshot = round_to_dtype(snapshot, dtype)
        save_snapshot(snapshot_path(trainer.default_root_dir, epoch), snapshot, self.probe_indices, labels,
                      dtype=dtype, metadata={"epoch": str(epoch), "representation": self.settings.representation})
        return snapshot, {"epoch": epoch, "capture": captured - started, "snapshot": time.perf_counter() - captured}

    def _recapture(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int, checkpoint: Path,
                   why: str, damaged: bool) -> Optional[Activations]:
        """Resume: capture the snapshot of an earlier ``epoch`` again with the weights of its
        ``checkpoint`` (every rank), then put the resumed weights back; rank zero gets it.
        ``why`` and ``damaged`` are for :meth:`_announce`.

        Raises:
            ConfigError: the checkpoint cannot be read or does not fit the model.
        """
        def refused(problem: str) -> ConfigError:
            return ConfigError(f"{self.prefix}: the snapshot of epoch {epoch} cannot be captured again: {problem}; "
                               "put back the snapshot or the checkpoint, or start a new run")

        try:
            weights = load_torch_file(checkpoint, "a checkpoint of train.py")["state_dict"]
        except ConfigError as error:
            raise refused(str(error)) from error
        except (KeyError, TypeError) as error:
            raise refused(f"{checkpoint} holds no state_dict") from error
        resumed = {name: tensor.detach().clone() for name, tensor in pl_module.state_dict().items()}
        try:
            pl_module.load_state_dict(weights)
        except RuntimeError as error:
            pl_module.load_state_dict(resumed)
            raise refused(f"the weights in {checkpoint} do not fit the model ({first_sentence(error)})") from error
        try:
            self._announce(trainer, epoch, why, str(checkpoint), damaged)
            stored = self._snapshot(trainer, pl_module, epoch)
        finally:
            pl_module.load_state_dict(resumed)
        return None if stored is None else stored[0]

    def _compute(self, run_dir: Path, epoch: int, snapshot: Activations,
                 timing: dict[str, float]) -> list[ProbedEpoch]:
        """Every number of ``epoch``, written to ``dynamics.csv`` (in the worker thread when
        ``background``; jobs run one at a time, in epoch order)."""
        started = time.perf_counter()
        result = self.analyse(epoch, snapshot)
        timing["probes"] = time.perf_counter() - started
        stalled = timing["capture"] + timing["snapshot"] + (0.0 if self.jobs.background else timing["probes"])
        result.values[("", "overhead_seconds")] = stalled
        result.values[("", "probe_seconds")] = timing["probes"]
        write_epochs(run_dir / DYNAMICS_FILE, result.rows(), owns=self.owns)
        timing["write"] = time.perf_counter() - started - timing["probes"]
        return [ProbedEpoch(result, timing)]

    def _recover(self, run_dir: Path, earlier: list[int], written: set[int],
                 snapshots: dict[int, Activations]) -> list[ProbedEpoch]:
        """On resume: analyse again the ``earlier`` probed epochs whose rows never reached
        ``dynamics.csv`` (not in ``written``: the run stopped while they were being computed),
        then restore the analysis's references to the last of them and epoch 0. ``snapshots``
        holds every snapshot this needs (read or captured again by the resume's plan)."""
        initial = snapshots[0] if 0 in earlier else None
        recovered = []
        for index, epoch in enumerate(earlier):
            if epoch in written:
                continue
            rank_zero_warn(f"{self.prefix}: epoch {epoch} has no rows in dynamics.csv; probing its snapshot again")
            self.restore(snapshots[earlier[index - 1]] if index else None, initial)
            recovered += self._compute(run_dir, epoch, snapshots[epoch], {"epoch": epoch, "capture": 0.0,
                                                                          "snapshot": 0.0})
        self.restore(snapshots[earlier[-1]], initial)
        return recovered

    def _publish(self, trainer: pl.Trainer, wait: bool = False) -> None:
        """Log the numbers of the probes finished so far (all of them with ``wait``), in order."""
        for probed in [probed for job in self.jobs.finished(wait=wait) for probed in job]:
            logged = time.perf_counter()
            for logger in trainer.loggers:
                self.log_to(logger, probed.result, trainer.global_step)
            probed.timing["log"] = time.perf_counter() - logged
            self.timings.append(probed.timing)
            waited, took = (probed.result.values[("", name)] for name in COST_METRICS)
            workers = f", {self.pool.workers} processes" if self.pool.parallel else ""
            say(trainer, f"{self.prefix}: epoch {probed.result.epoch} probed: training waited {waited:.2f} s, "
                         f"probes took {took:.2f} s ({len(self.layers)} layers, "
                         f"{len(self.probe_indices)} inputs{workers})")

    def _capture(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Activations, torch.Tensor]:
        """This epoch's points of the whole probe set and its labels, on every rank."""
        local = capture_probe_images(pl_module.model, self._images, self.layers,
                                     representation=self.settings.representation, projector=self.projector,
                                     batch_size=self.settings.batch_size, device=pl_module.device,
                                     autocast=session_of(trainer, pl_module).autocast,
                                     capture_inputs=self.settings.capture_inputs)
        positions = self._positions.to(pl_module.device)
        n_total = len(self.probe_indices)
        gathered = gather_in_probe_order(flatten_activations(local), positions, pl_module.all_gather, n_total)
        labels = gather_in_probe_order({"labels": self._labels.to(pl_module.device)}, positions,
                                       pl_module.all_gather, n_total)["labels"]
        return unflatten_activations(gathered), labels.cpu()

    def _check_budget(self, snapshot: Activations, max_epochs: Optional[int]) -> None:
        budget = SnapshotBudget(
            layer_widths={layer: (sides["input"].shape[1] if "input" in sides else 0, sides["output"].shape[1])
                          for layer, sides in snapshot.items()},
            n_inputs=len(self.probe_indices),
            bytes_per_float=torch.finfo(self.settings.torch_snapshot_dtype).bits // 8,
            capture_inputs=self.settings.capture_inputs,
            every_n_epochs=self.settings.every_n_epochs,
            max_epochs=max_epochs if max_epochs and max_epochs > 0 else 1000,
        )
        budget.check(self.settings.max_snapshot_bytes)
        rank_zero_info(f"{self.prefix}: snapshots will take {budget.describe()}")
