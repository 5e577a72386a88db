"""The feature-dynamics analysis (:class:`Dynamics`): remembers the initial and previous epoch's
snapshots and diagrams so that each epoch's drift is measured against them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Optional

import torch

from attnconv_pl.analyses.base import (
    Analysis,
    AnalysisResult,
    CheckpointInputs,
    MetricFamily,
)
from attnconv_pl.analyses.dynamics.runner import run_probes
from attnconv_pl.analyses.dynamics.settings import Diagrams, DynamicsSettings, Snapshot
from attnconv_pl.analyses.probe_pool import ProbePool, resolve_workers
from attnconv_pl.capture import Projector, resolve_layers
from attnconv_pl.capture.probe_set import capture_probe_images, round_to_dtype
from attnconv_pl.errors import ConfigError


class Dynamics(Analysis):
    """Feature dynamics of the successive epochs of one run, remembering what drift is measured
    against.

    Keeps the initial (epoch 0) snapshot and the previous probed epoch's snapshot and output
    diagrams, so that each call of :meth:`run` computes ``drift_prev_*`` and ``drift_init_*``.
    The training callback and ``probe.py`` both probe through this class.

    Args:
        settings: what to compute.
        layers: probed layers in depth order.
        pool: where the probes run (default: a pool of ``settings.num_workers`` processes, all
            free cores when None; see :func:`attnconv_pl.analyses.probe_pool.resolve_workers`); its
            processes start on the first :meth:`run` and stop at :meth:`close`.
    """

    name = "dynamics"
    runs_live = False  # during training callbacks.FeatureDynamics runs it on stored snapshots
    settings_type = DynamicsSettings
    families = (
        MetricFamily("compactness", "Compactness: variance and intrinsic dimension of each layer's output",
                     r"variance|participation_ratio|id_.+"),
        MetricFamily("stability", "Stability: each layer's input versus its output", r"stability_.+|lipschitz_.+"),
        MetricFamily("next", "Next layer: diagram distances to the next probed layer", r"next_.+"),
        MetricFamily("drift", "Drift: each layer's output against the previous epoch and initialisation",
                     r"drift_.+"),
        MetricFamily("topology", "Topology: persistence summaries of each layer's output", r"h\d+_.+"),
    )

    def __init__(self, settings: DynamicsSettings, layers: Sequence[str], pool: Optional[ProbePool] = None) -> None:
        super().__init__(settings)
        self.layers = list(layers)
        self.pool = pool or ProbePool(resolve_workers(settings.num_workers))
        self.initial: Optional[Snapshot] = None
        self.previous: Optional[Snapshot] = None
        self.previous_diagrams: Optional[dict[str, Diagrams]] = None
        self.last_epoch: Optional[int] = None
        self._projector: Optional[Projector] = None  # offline capture's, one per run (it caches matrices)

    @classmethod
    def for_model(cls, settings: DynamicsSettings, model: torch.nn.Module) -> Dynamics:
        """The dynamics of the layers ``settings.layers`` selects (default: ``model.probe_layers``).

        Raises:
            ConfigError: a pattern matches no layer (the message lists the layers), or the
                settings name none and the model declares no ``probe_layers``.
        """
        if not settings.layers and not hasattr(model, "probe_layers"):
            raise ConfigError(f"{type(model).__name__} declares no probe_layers; name the layers to probe "
                              "(probe.py and train.py: --dynamics.layers '[NAME, ...]')")
        return cls(settings, resolve_layers(model, settings.layers or model.probe_layers))

    def restore(self, previous: Optional[Snapshot], initial: Optional[Snapshot]) -> None:
        """Resume from stored snapshots (their diagrams are recomputed when needed)."""
        self.previous, self.initial, self.previous_diagrams = previous, initial, None

    def run(self, epoch: int, snapshot: Snapshot, topology: Optional[bool] = None) -> AnalysisResult:
        """Every number of ``epoch`` (see :func:`run_probes`); then ``snapshot`` becomes the
        previous one (and the initial one at epoch 0)."""
        if epoch == 0:
            self.initial = snapshot
        result = run_probes(epoch, snapshot, self.settings, layers=self.layers, previous=self.previous,
                            initial=self.initial, previous_diagrams=self.previous_diagrams, topology=topology,
                            pool=self.pool)
        self.previous, self.previous_diagrams = snapshot, result.artifacts.get("diagrams") or None
        self.last_epoch = epoch
        return result

    def close(self) -> None:
        """Stop the pool's worker processes (a later :meth:`run` starts them again)."""
        self.pool.close()

    def probe_checkpoint(self, checkpoint: CheckpointInputs) -> AnalysisResult:
        """What the training callback logged at the checkpoint's epoch: capture the probe set
        (points rounded to the snapshot dtype, as the callback stores them), then :meth:`run`.

        ``drift_prev_*`` refers to the run's preceding numbered checkpoint and ``drift_init_*`` to
        epoch 0; when those were not probed just before, they are captured (not probed) first.
        The artifact ``probe_accuracy`` is the top-1 accuracy of the checkpoint on the probe set
        (only when the probe set is the run's own data); ``seconds`` splits the time into
        ``references``, ``capture`` and ``probes``.
        """
        started = time.perf_counter()
        probe_set = checkpoint.inputs(self.settings.probe_split, self.settings.probe_size)
        self._restore_references(checkpoint, probe_set.images)
        referenced = time.perf_counter()
        logits: list[torch.Tensor] = []
        handle = checkpoint.model.register_forward_hook(lambda module, args, output: logits.append(output.detach()))
        try:
            snapshot = self._capture(checkpoint, probe_set.images)
        finally:
            handle.remove()
        captured = time.perf_counter()
        epoch = checkpoint.epoch
        result = self.run(epoch, snapshot, topology=self.settings.with_topology(epoch, checkpoint.max_epochs))
        if probe_set.own_data and logits:
            predictions = torch.cat(logits).float().argmax(dim=1).cpu()
            result.artifacts["probe_accuracy"] = float((predictions == probe_set.labels).float().mean())
        result.artifacts["seconds"] = {"references": referenced - started, "capture": captured - referenced,
                                       "probes": time.perf_counter() - captured}
        return result

    def _capture(self, checkpoint: CheckpointInputs, images: torch.Tensor) -> Snapshot:
        """The points of ``images`` at the model's current weights, rounded as snapshots are."""
        if self._projector is None:
            self._projector = Projector(project_dim=self.settings.project_dim, seed=self.settings.seed)
        points = capture_probe_images(checkpoint.model, images, self.layers,
                                      representation=self.settings.representation, projector=self._projector,
                                      batch_size=self.settings.batch_size, device=checkpoint.device,
                                      autocast=checkpoint.autocast, capture_inputs=self.settings.capture_inputs)
        return round_to_dtype(points, self.settings.torch_snapshot_dtype)

    def _restore_references(self, checkpoint: CheckpointInputs, images: torch.Tensor) -> None:
        """Capture the preceding numbered checkpoint and epoch 0, as the callback had them,
        unless the preceding one was just probed."""
        earlier = checkpoint.earlier_epochs
        if checkpoint.epoch == 0 or not earlier or self.last_epoch == max(earlier):
            return

        def reference(epoch: int) -> Snapshot:
            with checkpoint.weights_of(epoch):
                return self._capture(checkpoint, images)

        initial = self.initial
        if initial is None and 0 in earlier:
            initial = reference(0)
        previous = initial if max(earlier) == 0 else reference(max(earlier))
        self.restore(previous, initial)
