"""The numbers of feature dynamics, layer by layer: compactness (variance, intrinsic dimension),
drift and stability (point-cloud W2 and friends), persistence diagrams and their distances. Each
function is one probe call: tensors in, ``{metric name: value}`` out (NaN plus a warning when a
probe fails, see :func:`guarded`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Literal, Optional

import numpy as np
import torch

from attnconv_pl import probes
from attnconv_pl.analyses.dynamics.settings import DIAGRAM_DISTANCES, Diagrams, DynamicsSettings
from attnconv_pl.probes.intrinsic_dim import TORCH_METHODS


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
                      "--dynamics.exact_w2_max_iter; probe.py: --dynamics.exact_w2_max_iter N).",
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


def same_points(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether two point clouds hold the same values (the first rows are compared first)."""
    return x.shape == y.shape and x.dtype == y.dtype and torch.equal(x[:1], y[:1]) and torch.equal(x, y)


def first_equal_keys(points: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, Hashable]:
    """``{key: the first key whose points equal key's}`` (itself when none before it does), so
    that equal clouds are probed once: a layer's input is often the previous layer's output,
    and the previous epoch the initialisation."""
    first: dict[Hashable, Hashable] = {}
    for key, cloud in points.items():
        first[key] = next((earlier for earlier in first
                           if first[earlier] == earlier and same_points(points[earlier], cloud)), key)
    return first
