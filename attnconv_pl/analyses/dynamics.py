"""The feature-dynamics analysis: snapshots of a probe set in, rows of ``dynamics.csv`` out.

Both ``callbacks.FeatureDynamics`` (during training) and ``probe.py`` (on checkpoints) compute
their numbers here, with settings from one dataclass (:class:`DynamicsSettings`), so a number
logged live and one recomputed later from the checkpoint are equal by construction. Every
number comes from ``attnconv_pl.probes``; this module only decides what is compared with what,
names the results and declares their families (:data:`Dynamics.families`).

A *snapshot* is ``{layer: {"output": Tensor (N, d_out), "input": Tensor (N, d_in)}}`` (``input``
optional) for the N inputs of the probe set, in probe-set order.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch

from attnconv_pl import probes
from attnconv_pl.analyses.base import (
    Analysis,
    AnalysisResult,
    CheckpointInputs,
    MetricFamily,
    check_field_types,
    is_scheduled_epoch,
)
from attnconv_pl.analyses.probe_pool import Call, ProbePool, resolve_workers
from attnconv_pl.capture import Projector, resolve_layers
from attnconv_pl.capture.probe_set import capture_probe_images, round_to_dtype
from attnconv_pl.errors import ConfigError
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
        probe_size: inputs in the probe set (fewer if the split is smaller).
        probe_split: split of the data module the probe set is drawn from.
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
        seed: seeds the probe set, projections and every stochastic probe.
        snapshot_dtype: dtype of stored snapshots; probes run on the stored values.
        max_snapshot_bytes: refuse to start training when the run's snapshots would exceed this.
        batch_size: probe-set batch size of the capture.
        background: during training, compute the probes in a worker thread while training goes
            on (``False``: training waits for them, simplest to debug).
        num_workers: processes computing one epoch's probes side by side (layers and their
            persistence diagrams; numbers those of one process computing on one thread, up to
            the last bit of float32 matrix products, see :mod:`attnconv_pl.analyses.probe_pool`). Default (None): the CPU cores left free
            by the training processes (one each) and their data loaders' workers (all of them in
            ``probe.py``), at least 1; 0 or 1: in the process that trains (or runs ``probe.py``),
            one probe at a time.
    """

    layers: Optional[list[str]] = None
    probe_size: int = 1000
    probe_split: Literal["train", "val", "test"] = "val"
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
    seed: int = 0
    snapshot_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    max_snapshot_bytes: int = 4 * 1024**3
    batch_size: int = 256
    background: bool = True
    num_workers: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "id_methods", tuple(self.id_methods))
        check_field_types(self)
        for name in ("probe_size", "project_dim", "every_n_epochs", "topology_every_n_epochs", "mle_k", "max_points",
                     "lipschitz_pairs", "exact_w2_max_n", "exact_w2_max_iter", "sliced_projections",
                     "max_snapshot_bytes", "batch_size"):
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


def guarded(layer: str, names: Sequence[str], compute: Callable[[], Mapping[str, float]]) -> dict[str, float]:
    """Run one probe; on failure warn and return NaN for each of its metric ``names``.

    Training never stops because a probe saw odd activations.
    """
    try:
        return {name: float(value) for name, value in compute().items()}
    except Exception as error:  # noqa: BLE001 - any probe failure becomes NaN plus a warning
        warnings.warn(f"probe {'/'.join(names)} failed on layer {layer!r}: {error}; logged as NaN", stacklevel=2)
        return {name: math.nan for name in names}


def compactness_metrics(layer: str, output: torch.Tensor, settings: DynamicsSettings) -> dict[str, float]:
    """``variance``, ``participation_ratio`` and ``id_<method>`` of a layer's output (N, d).

    TwoNN and MLE share one k-nearest-neighbour pass; scikit-dimension estimators run on their own.
    """
    values = guarded(layer, ["variance"], lambda: {"variance": probes.total_variance(output)})
    values |= guarded(layer, ["participation_ratio"],
                      lambda: {"participation_ratio": probes.participation_ratio(output)})
    shared = tuple(method for method in settings.id_methods if method in TORCH_METHODS)
    dimensions = guarded(layer, [f"id_{method}" for method in shared], lambda: {
        f"id_{method}": value for method, value in probes.intrinsic_dimensions(output, shared, k=settings.mle_k).items()
    }) if shared else {}
    for method in settings.id_methods:
        if method not in TORCH_METHODS:
            dimensions |= guarded(layer, [f"id_{method}"],
                                  lambda: {f"id_{method}": probes.intrinsic_dimension(output, method)})  # noqa: B023 (called at once)
    return values | {f"id_{method}": dimensions[f"id_{method}"] for method in settings.id_methods}


def w2_method_of(n_points: int, settings: DynamicsSettings) -> Literal["exact", "sliced", "paired"]:
    """How W2 between clouds of ``n_points`` is computed: ``settings.w2_method``, or for ``auto``
    exact up to ``exact_w2_max_n`` points and sliced above."""
    if settings.w2_method != "auto":
        return settings.w2_method
    return "exact" if n_points <= settings.exact_w2_max_n else "sliced"


def w2_name(name: str, method: str) -> str:
    """The metric name of a point-cloud W2 computed by ``method``: ``name`` for exact values,
    ``<name>_<method>`` for the others (never comparable with exact values)."""
    return name if method == "exact" else f"{name}_{method}"


def point_cloud_w2(x: torch.Tensor, y: torch.Tensor, method: str, settings: DynamicsSettings) -> tuple[float, dict]:
    """W2 between two point clouds of the same inputs by ``method`` (see :func:`w2_method_of`),
    and how its solver stopped (``{"converged": bool}`` for exact, ``{}`` for the others). The
    solver's own warning is left out: :func:`run_probes` warns once per epoch, naming the setting."""
    if method == "exact":
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"wasserstein\(method='exact'\)", RuntimeWarning)
            return probes.wasserstein(x, y, p=2, method="exact", num_iter_max=settings.exact_w2_max_iter, log=True)
    if method == "paired":
        return probes.paired_displacement(x, y, p=2), {}
    return probes.wasserstein(x, y, p=2, method="sliced", n_projections=settings.sliced_projections,
                              seed=settings.seed, log=True)


CONVERGED = "_converged"
"""Suffix of the marker beside an iterative value: ``<metric>_converged`` is 1 (converged) or 0."""


def w2_metrics(layer: str, name: str, x: torch.Tensor, y: torch.Tensor,
               settings: DynamicsSettings) -> dict[str, float]:
    """``{<name> or <name>_<method>: W2(x, y)}`` by the method for their size (see :func:`w2_name`),
    and for exact values ``<name>_converged`` (1 or 0) beside it."""
    method = w2_method_of(max(len(x), len(y)), settings)
    metric = w2_name(name, method)
    marker = [metric + CONVERGED] if method == "exact" else []

    def compute() -> dict[str, float]:
        value, stop = point_cloud_w2(x, y, method, settings)
        return {metric: value} | {flag: float(stop["converged"]) for flag in marker}

    return guarded(layer, [metric, *marker], compute)


def warn_unconverged_w2(values: Mapping[tuple[str, str], float], settings: DynamicsSettings) -> None:
    """One warning naming the exact W2 values the network simplex's budget stopped (marker 0)."""
    stopped = [f"{metric.removesuffix(CONVERGED)} of {layer}" for (layer, metric), value in values.items()
               if metric.endswith(CONVERGED) and value == 0.0]
    if stopped:
        warnings.warn(f"dynamics: {len(stopped)} exact W2 value(s) ({', '.join(stopped)}) stopped at "
                      f"exact_w2_max_iter={settings.exact_w2_max_iter} network-simplex pivots before optimality; "
                      "logged as NaN with <metric>_converged = 0. Raise dynamics.exact_w2_max_iter (train.py: "
                      "--dynamics.exact_w2_max_iter; probe.py: --set dynamics.exact_w2_max_iter=N).",
                      RuntimeWarning, stacklevel=2)


def drift_metrics(layer: str, output: torch.Tensor, references: Mapping[str, torch.Tensor],
                  settings: DynamicsSettings) -> dict[str, float]:
    """``drift_<name>_displacement`` and ``drift_<name>_w2`` (or ``_w2_<method>``) of a layer's
    output against each named reference snapshot of the same layer and probe set (``name`` is
    ``prev`` or ``init``), in the order given. A reference equal to an earlier one (the previous
    epoch is the initialisation at the first probed epoch) takes that one's numbers instead of
    computing them again."""
    values: dict[str, float] = {}
    for name, computed_as in first_equal_keys(references).items():
        if computed_as == name:
            values |= drift_against(layer, output, references[name], name, settings)
        else:
            values |= {metric.replace(f"drift_{computed_as}_", f"drift_{name}_", 1): value
                       for metric, value in values.items() if metric.startswith(f"drift_{computed_as}_")}
    return values


def drift_against(layer: str, output: torch.Tensor, reference: torch.Tensor, name: str,
                  settings: DynamicsSettings) -> dict[str, float]:
    """``drift_<name>_displacement`` and ``drift_<name>_w2`` (or ``_w2_<method>``) against one reference."""
    displacement = f"drift_{name}_displacement"
    values = guarded(layer, [displacement], lambda: {displacement: probes.paired_displacement(output, reference)})
    return values | w2_metrics(layer, f"drift_{name}_w2", output, reference, settings)


def stability_metrics(layer: str, layer_input: torch.Tensor, output: torch.Tensor,
                      settings: DynamicsSettings) -> dict[str, float]:
    """Input-to-output ``lipschitz_*`` ratios and, when widths agree, ``stability_w2`` (or
    ``stability_w2_<method>``)."""
    lipschitz_names = [f"lipschitz_{q}" for q in ("max", "p50", "p90", "p99")]
    values = guarded(layer, lipschitz_names, lambda: {
        f"lipschitz_{q}": v
        for q, v in probes.lipschitz_ratios(layer_input, output, pairs=settings.lipschitz_pairs,
                                            seed=settings.seed).items()
    })
    if layer_input.shape[1] == output.shape[1]:
        values |= w2_metrics(layer, "stability_w2", layer_input, output, settings)
    return values


def diagrams_of(layer: str, points: torch.Tensor, settings: DynamicsSettings) -> Optional[Diagrams]:
    """Persistence diagrams of a point cloud, or None (with a warning) when they fail."""
    try:
        return probes.persistence_diagrams(points, max_dim=settings.max_dim, max_points=settings.max_points,
                                           seed=settings.seed, subsample=settings.subsample)
    except Exception as error:  # noqa: BLE001
        warnings.warn(f"persistence diagrams failed on layer {layer!r}: {error}; logged as NaN", stacklevel=2)
        return None


def diagram_distance_metrics(layer: str, prefix: str, first: Optional[Diagrams], second: Optional[Diagrams],
                             max_dim: int) -> dict[str, float]:
    """``<prefix>_h<d>_{w1,w2,bottleneck}`` between two lists of diagrams (NaN if one is missing)."""
    values = {}
    for dim in range(max_dim + 1):
        for suffix, order in DIAGRAM_DISTANCES.items():
            name = f"{prefix}_h{dim}_{suffix}"
            if first is None or second is None:
                values[name] = math.nan
            else:
                values |= guarded(layer, [name], lambda: {
                    name: probes.diagram_distance(first[dim], second[dim], order)})  # noqa: B023 (called at once)
    return values


def topology_summary(diagrams: Optional[Diagrams], max_dim: int) -> dict[str, float]:
    """``h<d>_bars`` (number of finite pairs) and ``h<d>_total_persistence`` (sum of lifetimes)."""
    values = {}
    for dim in range(max_dim + 1):
        diagram = diagrams[dim] if diagrams is not None else None
        values[f"h{dim}_bars"] = math.nan if diagram is None else float(len(diagram))
        values[f"h{dim}_total_persistence"] = (
            math.nan if diagram is None else float(np.sum(diagram[:, 1] - diagram[:, 0])) if len(diagram) else 0.0)
    return values


def flattened(calls: Mapping[str, list[Call]]) -> list[Call]:
    """The calls of every layer, layer after layer."""
    return [call for layer_calls in calls.values() for call in layer_calls]


def collected(calls: Mapping[str, list[Call]], results: Iterator[dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{layer: its metrics}`` from the results of :func:`flattened` ``calls``, taken in order from ``results``."""
    return {layer: {metric: value for _ in layer_calls for metric, value in next(results).items()}
            for layer, layer_calls in calls.items()}


def run_probes(
    epoch: int,
    snapshot: Snapshot,
    settings: DynamicsSettings,
    *,
    layers: Optional[Sequence[str]] = None,
    previous: Optional[Snapshot] = None,
    initial: Optional[Snapshot] = None,
    previous_diagrams: Optional[Mapping[str, Diagrams]] = None,
    topology: Optional[bool] = None,
    pool: Optional[ProbePool] = None,
) -> AnalysisResult:
    """Every number of one probed epoch.

    Args:
        epoch: completed training epochs (0 = at initialisation).
        snapshot: this epoch's activations per layer (see module docstring).
        settings: what to compute.
        layers: probed layers in depth order (default: the snapshot's order); consecutive
            layers are compared by ``next_*`` diagram distances.
        previous: the previous probed epoch's snapshot, for ``drift_prev_*``.
        initial: the epoch-0 snapshot, for ``drift_init_*`` (skipped at epoch 0 itself).
        previous_diagrams: the previous probed epoch's output diagrams per layer, for
            ``drift_prev_h<d>_*``; computed from ``previous`` when missing.
        topology: override ``settings.topology`` for this epoch (``topology_every_n_epochs``).
        pool: where the probes run (default: one after another in this process). The probes of
            all layers and every persistence diagram run side by side first, then the diagram
            distances. Nothing is computed twice: each distinct point cloud's diagrams (a
            layer's input often equals the previous layer's output) and each distinct pair of
            diagrams' distances once, drift against an initialisation equal to the previous
            epoch once. The numbers (up to the last bit of float32 matrix products) and their order do not depend on the pool.

    Returns:
        An :class:`AnalysisResult` whose artifact ``diagrams`` holds each layer's output
        diagrams (with topology); a probe that fails gives NaN and a warning, never an exception.
    """
    layers = list(layers or snapshot.keys())
    with_topology = settings.topology if topology is None else topology
    pool = pool or ProbePool(workers=1)
    reference = {"prev": previous or {}, "init": initial if epoch != 0 and initial is not None else {}}
    metric_calls: dict[str, list[Call]] = {layer: [] for layer in layers}
    diagram_points: dict[tuple[str, str], torch.Tensor] = {}
    for layer in layers:
        output, layer_input = snapshot[layer]["output"], snapshot[layer].get("input")
        metric_calls[layer].append((compactness_metrics, (layer, output, settings)))
        references = {name: reference[name][layer]["output"] for name in ("prev", "init") if layer in reference[name]}
        if references:
            metric_calls[layer].append((drift_metrics, (layer, output, references, settings)))
        if layer_input is not None:
            metric_calls[layer].append((stability_metrics, (layer, layer_input, output, settings)))
        if with_topology:
            diagram_points[layer, "output"] = output
            if layer_input is not None:
                diagram_points[layer, "input"] = layer_input
            if layer in reference["prev"] and (previous_diagrams or {}).get(layer) is None:
                diagram_points[layer, "previous"] = reference["prev"][layer]["output"]
    computed_as = first_equal_keys(diagram_points)
    diagram_calls = {key: (diagrams_of, (key[0], points, settings)) for key, points in diagram_points.items()
                     if computed_as[key] == key}
    done = iter(pool.run(flattened(metric_calls) + list(diagram_calls.values())))
    values = collected(metric_calls, done)
    diagrams = dict(zip(diagram_calls, done))
    diagrams = {key: diagrams[computed_as[key]] for key in diagram_points}
    result = AnalysisResult(epoch)
    if with_topology:
        diagrams |= {(layer, "previous"): (previous_diagrams or {}).get(layer) for layer in layers
                     if (layer, "previous") not in diagrams}
        requests = [(layer, "stability", diagrams[layer, "input"], diagrams[layer, "output"])
                    for layer in layers if (layer, "input") in diagrams]
        requests += [(layer, "drift_prev", diagrams[layer, "previous"], diagrams[layer, "output"])
                     for layer in layers if layer in reference["prev"]]
        next_requests = [(layer, "next", diagrams[layer, "output"], diagrams[next_layer, "output"])
                         for layer, next_layer in zip(layers, layers[1:])]
        distances = diagram_distances(requests + next_requests, settings.max_dim, pool)
        for layer in layers:
            values[layer] |= topology_summary(diagrams[layer, "output"], settings.max_dim)
        for (layer, _, _, _), metrics in zip(requests, distances):  # each layer: stability, then drift_prev
            values[layer] |= metrics
        next_values = distances[len(requests):]
        result.artifacts["diagrams"] = {layer: diagrams[layer, "output"] for layer in layers
                                        if diagrams[layer, "output"] is not None}
    for layer in layers:
        result.values.update({(layer, metric): value for metric, value in values[layer].items()})
    if with_topology:
        for (layer, _, _, _), metrics in zip(next_requests, next_values):
            result.values.update({(layer, metric): value for metric, value in metrics.items()})
    warn_unconverged_w2(result.values, settings)
    return result


def same_points(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether two point clouds hold the same values (the first rows are compared first)."""
    return x.shape == y.shape and x.dtype == y.dtype and torch.equal(x[:1], y[:1]) and torch.equal(x, y)


def first_equal_keys(points: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, Hashable]:
    """``{key: the first key whose points equal key's}`` (itself when none before it does), so
    that equal clouds are probed once: a layer's input is often the previous layer's output,
    and the previous epoch the initialisation."""
    first: dict[Hashable, Hashable] = {}
    for key, cloud in points.items():
        first[key] = next((earlier for earlier in first if first[earlier] == earlier and same_points(points[earlier], cloud)),
                          key)
    return first


def diagram_distances(requests: Sequence[tuple[str, str, Optional[Diagrams], Optional[Diagrams]]], max_dim: int,
                      pool: ProbePool) -> list[dict[str, float]]:
    """:func:`diagram_distance_metrics` of each ``(layer, prefix, first, second)`` request, in order,
    each distinct pair of diagrams computed once (``next`` of one layer is often ``stability`` of
    the following one, when its input is the previous layer's output)."""
    # diagrams are keyed by identity: equal point clouds share one diagram object (see
    # first_equal_keys), and every diagram stays alive in the caller while this runs
    unique: dict[tuple[int, int], tuple[str, Call]] = {}
    for layer, prefix, first, second in requests:
        unique.setdefault((id(first), id(second)),
                          (prefix, (diagram_distance_metrics, (layer, prefix, first, second, max_dim))))
    computed = dict(zip(unique, pool.run([call for _, call in unique.values()])))
    renamed = []
    for _, prefix, first, second in requests:
        computed_prefix = unique[id(first), id(second)][0]
        renamed.append({prefix + metric[len(computed_prefix):]: value
                        for metric, value in computed[id(first), id(second)].items()})
    return renamed


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
                              "(probe.py: --set dynamics.layers=[NAME,...]; train.py: --dynamics.layers)")
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
