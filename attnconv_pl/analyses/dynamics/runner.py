"""One epoch of feature dynamics: which layer is compared with what (:func:`run_probes`), the
probe calls spread over a :class:`~attnconv_pl.analyses.probe_pool.ProbePool`, and diagram
distances computed once for pairs of equal point clouds."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Optional

import torch

from attnconv_pl.analyses.base import (
    AnalysisResult,
)
from attnconv_pl.analyses.dynamics.metrics import (
    compactness_metrics,
    diagram_distance_metrics,
    diagrams_of,
    drift_metrics,
    first_equal_keys,
    stability_metrics,
    topology_summary,
    warn_unconverged_w2,
)
from attnconv_pl.analyses.dynamics.settings import Diagrams, DynamicsSettings, Snapshot
from attnconv_pl.analyses.probe_pool import Call, ProbePool
from attnconv_pl.analyses.session import ProbingSettings


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
        settings: what to compute (shared fields left at None: the probing defaults, seed 0).
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
            epoch once. The numbers (up to the last bit of float32 matrix products) and their
            order do not depend on the pool.

    Returns:
        An :class:`AnalysisResult` whose artifact ``diagrams`` holds each layer's output
        diagrams (with topology); a probe that fails gives NaN and a warning, never an exception.
    """
    settings = ProbingSettings().fill(settings)
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
