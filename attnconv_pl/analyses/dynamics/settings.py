"""The settings of feature dynamics (:class:`DynamicsSettings`, the ``dynamics:`` section of the
configs) and the shapes it works on: a snapshot, persistence diagrams, the stored dtypes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Optional

import torch

from attnconv_pl.analyses.base import (
    check_field_types,
    is_scheduled_epoch,
)
from attnconv_pl.analyses.session import check_shared_fields
from attnconv_pl.probes.intrinsic_dim import TORCH_METHODS, skdim_estimators

Snapshot = Mapping[str, Mapping[str, torch.Tensor]]
Diagrams = list  # one (m, 2) numpy array per homology dimension 0..max_dim
DIAGRAM_DISTANCES = {"w1": 1, "w2": 2, "bottleneck": math.inf}


SNAPSHOT_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
"""Dtypes a snapshot can be stored in, by name."""


@dataclass(frozen=True)
class DynamicsSettings:
    """Everything feature dynamics does, with its defaults: the single source of the
    ``dynamics:`` section of the configs (``callbacks.FeatureDynamics``) and of ``probe.py``'s
    probe options.

    Args:
        layers: names or glob patterns over ``model.named_modules()`` (of the network, i.e.
            ``pl_module.model``); default: the model's ``probe_layers``.
        probe_size: moved to ``probing.probe_size`` (the probing session's, shared by every
            analysis); a value here is read as that, with a deprecation warning.
        probe_split: moved to ``probing.probe_split``, as ``probe_size``.
        representation: ``flatten``, ``pool`` or ``tokens`` (see ``attnconv_pl.capture.to_points``).
        project_dim: points wider than this are randomly projected to it (fixed per layer).
        capture_inputs: also capture each layer's input (needed for ``stability_*``/``lipschitz_*``).
        every_n_epochs: probe every this many epochs (plus epoch 0 and the last epoch).
        topology: compute persistence diagrams and diagram distances.
        topology_every_n_epochs: compute topology only every this many epochs (and the last).
        id_methods: intrinsic-dimension estimators (``twonn``, ``mle`` or any scikit-dimension
            estimator name), each logged as ``id_<method>``.
        mle_k: neighbours of the Levina-Bickel MLE.
        max_points: points per persistence diagram (subsampled, see ``subsample``).
        max_dim: highest homology dimension (1 = H0 and H1).
        subsample: ``farthest`` or ``random`` point subsampling for the diagrams.
        lipschitz_pairs: random input pairs for the empirical Lipschitz ratios.
        w2_method: how point-cloud W2 (``drift_*_w2``, ``stability_w2``) is computed: ``exact``
            (an optimal assignment, O(n^3) time on one core: 0.3 s at 1000 points, 2.3 s at
            2000, 12 s at 4000, d=1024), ``sliced`` (``sliced_projections`` random directions,
            rescaled to W2's units: a lower bound in expectation, 0.1-0.5 s; at d=1024 it gave
            0.1x the exact value), ``paired`` (each input's point against its own point: an
            upper bound, exact for translations and small drifts, O(n d)) or ``auto`` (exact up
            to ``exact_w2_max_n`` points, sliced above). Other methods than exact are logged
            under their own names (``drift_prev_w2_sliced``, ``drift_prev_w2_paired``, ...):
            they are not comparable with exact values. Each exact W2 has a
            ``<name>_converged`` beside it: 1 when the network simplex found an optimal plan, 0
            (with a NaN value and a warning) when ``exact_w2_max_iter`` stopped it first.
        exact_w2_max_n: the most points ``w2_method: auto`` computes W2 exactly for.
        exact_w2_max_iter: the most network-simplex pivots of an exact W2 (POT's ``numItermax``).
        sliced_projections: projections of the sliced W2.
        seed: moved to ``probing.seed``, as ``probe_size``.
        snapshot_dtype: dtype of stored snapshots; probes run on the stored values.
        max_snapshot_bytes: refuse to start training when the run's snapshots would exceed this.
        batch_size: moved to ``probing.batch_size``, as ``probe_size``.
        background: during training, compute the probes in a worker thread while training goes
            on (``False``: training waits for them, simplest to debug).
        num_workers: processes computing one epoch's probes side by side (layers and their
            persistence diagrams; numbers those of one process computing on one thread, up to the
            last bit of float32 matrix products, see :mod:`attnconv_pl.analyses.probe_pool`).
            Default (None): the CPU cores left free by the training processes (one each) and their
            data loaders' workers (all of them in ``probe.py``), at least 1; 0 or 1: in the process
            that trains (or runs ``probe.py``), one probe at a time.
    """

    layers: Optional[list[str]] = None
    probe_size: Optional[int] = None
    probe_split: Optional[Literal["train", "val", "test"]] = None
    representation: Literal["flatten", "pool", "tokens"] = "flatten"
    project_dim: int = 1024
    capture_inputs: bool = True
    every_n_epochs: int = 1
    topology: bool = True
    topology_every_n_epochs: int = 1
    id_methods: tuple[str, ...] = ("twonn", "mle")
    mle_k: int = 20
    max_points: int = 500
    max_dim: int = 1
    subsample: Literal["farthest", "random"] = "random"
    lipschitz_pairs: int = 2000
    w2_method: Literal["auto", "exact", "sliced", "paired"] = "auto"
    exact_w2_max_n: int = 2000
    exact_w2_max_iter: int = 10_000_000
    sliced_projections: int = 128
    seed: Optional[int] = None
    snapshot_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    max_snapshot_bytes: int = 4 * 1024**3
    batch_size: Optional[int] = None
    background: bool = True
    num_workers: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "id_methods", tuple(self.id_methods))
        check_field_types(self)
        check_shared_fields(self)
        for name in ("project_dim", "every_n_epochs", "topology_every_n_epochs", "mle_k", "max_points",
                     "lipschitz_pairs", "exact_w2_max_n", "exact_w2_max_iter", "sliced_projections",
                     "max_snapshot_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_dim < 0:
            raise ValueError(f"max_dim must be >= 0, got {self.max_dim}")
        if self.num_workers is not None and (isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int)
                                             or self.num_workers < 0):
            raise ValueError(f"num_workers must be an integer >= 0 or None (all free cores), got {self.num_workers!r}")
        unknown = [method for method in self.id_methods
                   if method.lower() not in TORCH_METHODS and method.lower() not in skdim_estimators()]
        if unknown:
            known = ", ".join(TORCH_METHODS + tuple(sorted(skdim_estimators())))
            raise ValueError(f"id_methods: unknown estimator(s) {', '.join(map(repr, unknown))}; the estimators are "
                             f"{known}")

    @property
    def torch_snapshot_dtype(self) -> torch.dtype:
        return SNAPSHOT_DTYPES[self.snapshot_dtype]

    def is_scheduled(self, epoch: int, max_epochs: Optional[int]) -> bool:
        """Whether ``epoch`` (completed epochs) is probed: 0, every ``every_n_epochs``-th, the last."""
        return is_scheduled_epoch(epoch, self.every_n_epochs, max_epochs)

    def with_topology(self, epoch: int, max_epochs: Optional[int]) -> bool:
        """Whether topology is computed at ``epoch`` (``topology`` and its own schedule)."""
        return self.topology and is_scheduled_epoch(epoch, self.topology_every_n_epochs, max_epochs)
