"""Per-epoch activation snapshots of chosen layers and their dynamics, logged live."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from attnconv_pl.capture import (Activations, Projector, flatten_activations, gather_in_probe_order, resolve_layers,
                                 shard_indices, unflatten_activations)
from attnconv_pl.dynamics_csv import drop_epochs_after, read_rows, write_epochs
from attnconv_pl.memory import SnapshotBudget
from attnconv_pl.ordered_jobs import OrderedJobs
from attnconv_pl.analyses.base import AnalysisResult
from attnconv_pl.analyses.dynamics import Dynamics, DynamicsSettings
from attnconv_pl.probe_set import capture_probe_images, load_probe_images, round_to_dtype, select_probe_indices
from attnconv_pl.snapshots import load_snapshot, save_snapshot, snapshot_path
from attnconv_pl.wandb_dynamics import log_to_wandb, metric_key
from callbacks._settings import options_from

DYNAMICS_FILE = "dynamics.csv"


@dataclass
class ProbedEpoch:
    """What one probe job hands back: the numbers and the seconds of each stage
    (``capture``, ``snapshot``, ``probes``, ``write`` and, once logged, ``log``)."""

    result: AnalysisResult
    timing: dict[str, float]


@options_from(DynamicsSettings)
class FeatureDynamics(Callback):
    """Snapshot chosen layers on a fixed probe set each probed epoch and log their dynamics.

    At initialisation (epoch 0, before the first step), after every ``every_n_epochs`` training
    epochs and after the last one, the probe set is run through the model in eval mode under
    the trainer's precision; each layer's input and output become point clouds (one point per
    input), stored in ``snapshots/epoch=NNN.safetensors`` and probed by
    ``attnconv_pl.analyses.dynamics.run_probes`` (variance, intrinsic dimension, drift, stability,
    topology). Numbers go to ``dynamics.csv``, W&B (``dynamics/<layer>/<metric>`` against
    ``epoch``) and any other logger. Under DDP each rank captures its shard, the shards are
    gathered in probe-set order, and rank zero probes and writes.

    With ``background`` (default) training waits only for the capture and the snapshot file:
    the probes run in a worker thread, one epoch after another, while training goes on; their
    rows reach ``dynamics.csv`` as soon as they are computed and the loggers at the next
    training batch (all of them by the end of ``fit``). A run stopped while a probe was
    computing re-probes that epoch from its snapshot when resumed.

    Args:
        enabled: ``False`` turns the callback into a no-op (``--dynamics.enabled false``).
        **settings: the fields of :class:`attnconv_pl.analyses.dynamics.DynamicsSettings`
            (listed below), each a key of the ``dynamics:`` config section.
    """

    def __init__(self, enabled: bool = True, **settings: Any) -> None:
        self.enabled = enabled
        self.settings = DynamicsSettings(**settings)
        self.projector = Projector(project_dim=self.settings.project_dim, seed=self.settings.seed)
        self.layers: list[str] = []
        self.probe_indices: Optional[torch.Tensor] = None
        self.probed_epochs: list[int] = []  # captured, snapshot written; rows may still be computing
        self.resumed = False  # state loaded from a checkpoint
        self.timings: list[dict[str, float]] = []  # per probe on rank zero: epoch and seconds per stage
        self._images: Optional[torch.Tensor] = None
        self._labels: Optional[torch.Tensor] = None
        self._positions: Optional[torch.Tensor] = None
        self.analysis: Optional[Dynamics] = None
        self.max_epochs: Optional[int] = None
        self.jobs = OrderedJobs(background=self.settings.background, name="feature-dynamics")

    # ------------------------------------------------------------------ setup and state
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.enabled:
            return
        network = pl_module.model
        self.layers = resolve_layers(network, self.settings.layers or network.probe_layers)
        self.analysis = Dynamics(self.settings, self.layers)
        self.max_epochs = trainer.max_epochs
        dataset = trainer.datamodule.eval_dataset(self.settings.probe_split)
        if self.probe_indices is None:
            self.probe_indices = select_probe_indices(len(dataset), self.settings.probe_size, self.settings.seed)
        if len(self.probe_indices) < self.settings.probe_size:
            rank_zero_info(f"dynamics: the {self.settings.probe_split} split has {len(dataset)} inputs; "
                           f"the probe set uses all of them (probe_size={self.settings.probe_size})")
        self._positions = shard_indices(len(self.probe_indices), trainer.global_rank, trainer.world_size)
        self._images, self._labels = load_probe_images(dataset, self.probe_indices[self._positions])

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"probe_indices": None if self.probe_indices is None else self.probe_indices.tolist(),
                "probed_epochs": list(self.probed_epochs), "layers": list(self.layers), "seed": self.settings.seed}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("probe_indices") is not None:
            self.probe_indices = torch.tensor(state_dict["probe_indices"], dtype=torch.int64)
        self.probed_epochs = list(state_dict.get("probed_epochs", []))
        self.resumed = True

    # ------------------------------------------------------------------ schedule
    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Probe epoch 0 on a fresh start. On a resume at epoch N (the checkpoint's completed
        epochs) make every probed epoch <= N complete: rows of later epochs (an abandoned
        continuation) are dropped, an epoch without rows is probed again from its snapshot, and
        epoch N itself, when scheduled but without a snapshot (the run stopped before it was
        written), is captured again from the checkpoint's weights; drift then continues against
        the last probed epoch <= N."""
        if not self.enabled:
            return
        epoch = trainer.current_epoch
        due = sorted(set(self.probed_epochs) | ({epoch} if self.settings.is_scheduled(epoch, trainer.max_epochs) else set()))
        due = [e for e in due if e <= epoch]
        run_dir = Path(trainer.default_root_dir)
        capture = epoch in due
        if trainer.is_global_zero:
            drop_epochs_after(run_dir / DYNAMICS_FILE, epoch if self.resumed else -1)
            if self.resumed:
                written = {int(row["epoch"]) for row in read_rows(run_dir / DYNAMICS_FILE)[1]}
                capture = epoch in due and epoch not in written and not snapshot_path(run_dir, epoch).is_file()
                recovered = [e for e in due if not (capture and e == epoch)]
                if recovered:
                    self.jobs.submit(self._recover, run_dir, recovered, written)
        if trainer.strategy.broadcast(capture):  # a collective: every rank captures
            if self.resumed:
                rank_zero_warn(f"dynamics: epoch {epoch} has no snapshot; capturing it again from the checkpoint")
            self._probe(trainer, pl_module, epoch)

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
        self._publish(trainer, wait=True)

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.jobs.close()  # the rows of probes already queued still reach dynamics.csv

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.jobs.close()

    # ------------------------------------------------------------------ one probe
    def _probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        """Capture and store ``epoch``'s snapshot, then queue its probes (rank zero)."""
        self._publish(trainer)
        started = time.perf_counter()
        snapshot, labels = self._capture(trainer, pl_module)  # collective: every rank
        captured = time.perf_counter()
        if epoch == 0:
            self._check_budget(snapshot, trainer.max_epochs)
        if trainer.is_global_zero:
            snapshot = round_to_dtype(snapshot, self.settings.torch_snapshot_dtype)
            run_dir = Path(trainer.default_root_dir)
            save_snapshot(snapshot_path(run_dir, epoch), snapshot, self.probe_indices, labels,
                          dtype=self.settings.torch_snapshot_dtype,
                          metadata={"epoch": str(epoch), "representation": self.settings.representation})
            timing = {"epoch": epoch, "capture": captured - started, "snapshot": time.perf_counter() - captured}
            self.jobs.submit(self._compute, run_dir, epoch, snapshot, timing)
        if epoch not in self.probed_epochs:
            self.probed_epochs.append(epoch)
        self._publish(trainer)

    def _compute(self, run_dir: Path, epoch: int, snapshot: Activations,
                 timing: dict[str, float]) -> list[ProbedEpoch]:
        """Every number of ``epoch``, written to ``dynamics.csv`` (in the background thread when
        ``background``; jobs run one at a time, in epoch order)."""
        started = time.perf_counter()
        result = self.analysis.run(epoch, snapshot, topology=self.settings.with_topology(epoch, self.max_epochs))
        timing["probes"] = time.perf_counter() - started
        stalled = timing["capture"] + timing["snapshot"] + (0.0 if self.jobs.background else timing["probes"])
        result.values[("", "overhead_seconds")] = stalled
        result.values[("", "probe_seconds")] = timing["probes"]
        write_epochs(run_dir / DYNAMICS_FILE, result.rows())
        timing["write"] = time.perf_counter() - started - timing["probes"]
        return [ProbedEpoch(result, timing)]

    def _recover(self, run_dir: Path, earlier: list[int], written: set[int]) -> list[ProbedEpoch]:
        """On resume: probe again, from their snapshots, the ``earlier`` probed epochs whose rows
        never reached ``dynamics.csv`` (not in ``written``: the run stopped while they were being
        computed), then point drift at the last of them and at initialisation."""
        initial = self._load(run_dir, 0) if 0 in earlier else None
        recovered = []
        for index, epoch in enumerate(earlier):
            snapshot = None if epoch in written else self._load(run_dir, epoch)
            if snapshot is None:
                continue
            rank_zero_warn(f"dynamics: epoch {epoch} has no rows in dynamics.csv; probing its snapshot again")
            self.analysis.restore(self._load(run_dir, earlier[index - 1]) if index else None, initial)
            recovered += self._compute(run_dir, epoch, snapshot, {"epoch": epoch, "capture": 0.0, "snapshot": 0.0})
        self.analysis.restore(self._load(run_dir, earlier[-1]), initial)
        return recovered

    def _publish(self, trainer: pl.Trainer, wait: bool = False) -> None:
        """Log the numbers of the probes finished so far (all of them with ``wait``), in order."""
        for probed in [probed for job in self.jobs.finished(wait=wait) for probed in job]:
            logged = time.perf_counter()
            self._log(trainer, probed.result)
            probed.timing["log"] = time.perf_counter() - logged
            self.timings.append(probed.timing)
            waited, took = (probed.result.values[("", name)] for name in ("overhead_seconds", "probe_seconds"))
            rank_zero_info(f"dynamics: epoch {probed.result.epoch} probed: training waited {waited:.2f} s, "
                           f"probes took {took:.2f} s ({len(self.layers)} layers, {len(self.probe_indices)} inputs)")

    def _capture(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[Activations, torch.Tensor]:
        """This epoch's points of the whole probe set and its labels, on every rank."""
        local = capture_probe_images(pl_module.model, self._images, self.layers,
                                     representation=self.settings.representation, projector=self.projector,
                                     batch_size=self.settings.batch_size, device=pl_module.device,
                                     autocast=trainer.precision_plugin.forward_context,
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
        rank_zero_info(f"dynamics: snapshots will take {budget.describe()}")

    def _load(self, run_dir: Path, epoch: int) -> Optional[Activations]:
        path = snapshot_path(run_dir, epoch)
        try:
            return load_snapshot(path)[0]
        except (FileNotFoundError, ValueError) as error:
            rank_zero_warn(f"dynamics: cannot read {path} ({error}); drift against epoch {epoch} is skipped")
            return None

    def _log(self, trainer: pl.Trainer, result: AnalysisResult) -> None:
        metrics = {metric_key(layer, metric): value
                   for (layer, metric), value in result.values.items() if not math.isnan(value)}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                log_to_wandb(logger.experiment, result, self.layers)
            else:
                logger.log_metrics({"epoch": result.epoch, **metrics}, step=trainer.global_step)
