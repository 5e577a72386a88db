"""Per-epoch activation snapshots of chosen layers and their dynamics, logged live."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

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
from attnconv_pl.probe_runner import DynamicsTracker, ProbeResult, ProbeSettings
from attnconv_pl.probe_set import capture_probe_images, load_probe_images, round_to_dtype, select_probe_indices
from attnconv_pl.snapshots import load_snapshot, save_snapshot, snapshot_path
from attnconv_pl.wandb_dynamics import log_to_wandb, metric_key
from callbacks.epoch_checkpoint import is_scheduled_epoch

DYNAMICS_FILE = "dynamics.csv"
SNAPSHOT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class ProbedEpoch:
    """What one probe job hands back: the numbers and the seconds of each stage
    (``capture``, ``snapshot``, ``probes``, ``write`` and, once logged, ``log``)."""

    result: ProbeResult
    timing: dict[str, float]


class FeatureDynamics(Callback):
    """Snapshot chosen layers on a fixed probe set each probed epoch and log their dynamics.

    At initialisation (epoch 0, before the first step), after every ``every_n_epochs`` training
    epochs and after the last one, the probe set is run through the model in eval mode under
    the trainer's precision; each layer's input and output become point clouds (one point per
    input), stored in ``snapshots/epoch=NNN.safetensors`` and probed by
    ``attnconv_pl.probe_runner.run_probes`` (variance, intrinsic dimension, drift, stability,
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
        layers: names or glob patterns over ``model.named_modules()`` (of the network, i.e.
            ``pl_module.model``); default: the model's ``probe_layers``.
        probe_size: inputs in the probe set (fewer if the split is smaller).
        probe_split: split of the data module the probe set is drawn from.
        representation: ``flatten``, ``pool`` or ``tokens`` (see ``attnconv_pl.capture.to_points``).
        project_dim: points wider than this are randomly projected to it (fixed per layer).
        capture_inputs: also capture each layer's input (needed for ``stability_*``/``lipschitz_*``).
        every_n_epochs: probe every this many epochs (plus epoch 0 and the last epoch).
        topology: compute persistence diagrams and diagram distances.
        topology_every_n_epochs: compute topology only every this many epochs (and the last).
        id_methods: intrinsic-dimension estimators, each logged as ``id_<method>``.
        max_points, max_dim, lipschitz_pairs, exact_w2_max_n: see ``ProbeSettings``.
        seed: seeds the probe set, projections and stochastic probes.
        snapshot_dtype: dtype of stored snapshots; probes run on the stored values.
        max_snapshot_bytes: refuse to start when the run's snapshots would exceed this.
        batch_size: probe-set batch size of the capture.
        background: compute the probes in a worker thread while training goes on (``False``:
            training waits for them, simplest to debug).
    """

    def __init__(
        self,
        enabled: bool = True,
        layers: Optional[list[str]] = None,
        probe_size: int = 1000,
        probe_split: Literal["train", "val", "test"] = "val",
        representation: Literal["flatten", "pool", "tokens"] = "flatten",
        project_dim: int = 1024,
        capture_inputs: bool = True,
        every_n_epochs: int = 1,
        topology: bool = True,
        topology_every_n_epochs: int = 1,
        id_methods: tuple[str, ...] = ("twonn", "mle"),
        max_points: int = 500,
        max_dim: int = 1,
        lipschitz_pairs: int = 2000,
        exact_w2_max_n: int = 2000,
        seed: int = 0,
        snapshot_dtype: Literal["float16", "bfloat16", "float32"] = "float16",
        max_snapshot_bytes: int = 4 * 1024**3,
        batch_size: int = 256,
        background: bool = True,
    ) -> None:
        if every_n_epochs < 1 or topology_every_n_epochs < 1:
            raise ValueError("every_n_epochs and topology_every_n_epochs must be >= 1")
        self.enabled = enabled
        self.layer_patterns = layers
        self.probe_size = probe_size
        self.probe_split = probe_split
        self.representation = representation
        self.capture_inputs = capture_inputs
        self.every_n_epochs = every_n_epochs
        self.topology_every_n_epochs = topology_every_n_epochs
        self.snapshot_dtype = SNAPSHOT_DTYPES[snapshot_dtype]
        self.max_snapshot_bytes = max_snapshot_bytes
        self.batch_size = batch_size
        self.settings = ProbeSettings(id_methods=tuple(id_methods), topology=topology, max_dim=max_dim,
                                      max_points=max_points, lipschitz_pairs=lipschitz_pairs,
                                      exact_w2_max_n=exact_w2_max_n, seed=seed)
        self.projector = Projector(project_dim=project_dim, seed=seed)
        self.seed = seed
        self.layers: list[str] = []
        self.probe_indices: Optional[torch.Tensor] = None
        self.probed_epochs: list[int] = []  # captured, snapshot written; rows may still be computing
        self.resumed = False  # state loaded from a checkpoint
        self.timings: list[dict[str, float]] = []  # per probe on rank zero: epoch and seconds per stage
        self._images: Optional[torch.Tensor] = None
        self._labels: Optional[torch.Tensor] = None
        self._positions: Optional[torch.Tensor] = None
        self.tracker: Optional[DynamicsTracker] = None
        self.max_epochs: Optional[int] = None
        self.jobs = OrderedJobs(background=background, name="feature-dynamics")

    # ------------------------------------------------------------------ setup and state
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or not self.enabled:
            return
        network = pl_module.model
        self.layers = resolve_layers(network, self.layer_patterns or network.probe_layers)
        self.tracker = DynamicsTracker(self.settings, self.layers)
        self.max_epochs = trainer.max_epochs
        dataset = trainer.datamodule.eval_dataset(self.probe_split)
        if self.probe_indices is None:
            self.probe_indices = select_probe_indices(len(dataset), self.probe_size, self.seed)
        if len(self.probe_indices) < self.probe_size:
            rank_zero_info(f"dynamics: the {self.probe_split} split has {len(dataset)} inputs; "
                           f"the probe set uses all of them (probe_size={self.probe_size})")
        self._positions = shard_indices(len(self.probe_indices), trainer.global_rank, trainer.world_size)
        self._images, self._labels = load_probe_images(dataset, self.probe_indices[self._positions])

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"probe_indices": None if self.probe_indices is None else self.probe_indices.tolist(),
                "probed_epochs": list(self.probed_epochs), "layers": list(self.layers), "seed": self.seed}

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
        due = sorted(set(self.probed_epochs) | ({epoch} if self._scheduled(epoch, trainer.max_epochs) else set()))
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
        if self.enabled and self._scheduled(epoch, trainer.max_epochs):
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

    def _scheduled(self, epoch: int, max_epochs: Optional[int]) -> bool:
        return is_scheduled_epoch(epoch, self.every_n_epochs, max_epochs)

    def with_topology(self, epoch: int, max_epochs: Optional[int]) -> bool:
        """Whether topology is computed at ``epoch`` (``topology`` and its own schedule)."""
        return self.settings.topology and is_scheduled_epoch(epoch, self.topology_every_n_epochs, max_epochs)

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
            snapshot = round_to_dtype(snapshot, self.snapshot_dtype)
            run_dir = Path(trainer.default_root_dir)
            save_snapshot(snapshot_path(run_dir, epoch), snapshot, self.probe_indices, labels,
                          dtype=self.snapshot_dtype,
                          metadata={"epoch": str(epoch), "representation": self.representation})
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
        result = self.tracker.probe(epoch, snapshot, topology=self.with_topology(epoch, self.max_epochs))
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
            self.tracker.restore(self._load(run_dir, earlier[index - 1]) if index else None, initial)
            recovered += self._compute(run_dir, epoch, snapshot, {"epoch": epoch, "capture": 0.0, "snapshot": 0.0})
        self.tracker.restore(self._load(run_dir, earlier[-1]), initial)
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
                                     representation=self.representation, projector=self.projector,
                                     batch_size=self.batch_size, device=pl_module.device,
                                     autocast=trainer.precision_plugin.forward_context,
                                     capture_inputs=self.capture_inputs)
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
            bytes_per_float=torch.finfo(self.snapshot_dtype).bits // 8,
            capture_inputs=self.capture_inputs,
            every_n_epochs=self.every_n_epochs,
            max_epochs=max_epochs if max_epochs and max_epochs > 0 else 1000,
        )
        budget.check(self.max_snapshot_bytes)
        rank_zero_info(f"dynamics: snapshots will take {budget.describe()}")

    def _load(self, run_dir: Path, epoch: int) -> Optional[Activations]:
        path = snapshot_path(run_dir, epoch)
        try:
            return load_snapshot(path)[0]
        except (FileNotFoundError, ValueError) as error:
            rank_zero_warn(f"dynamics: cannot read {path} ({error}); drift against epoch {epoch} is skipped")
            return None

    def _log(self, trainer: pl.Trainer, result: ProbeResult) -> None:
        metrics = {metric_key(layer, metric): value
                   for (layer, metric), value in result.values.items() if not math.isnan(value)}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                log_to_wandb(logger.experiment, result, self.layers)
            else:
                logger.log_metrics({"epoch": result.epoch, **metrics}, step=trainer.global_step)
