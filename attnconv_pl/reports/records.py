"""The probed runs a report is made of, and how their metrics are ordered into sections."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from attnconv_pl.analyses import ANALYSES, MetricFamily, load_analysis, metric_family

Row = tuple[int, str, str, float]
"""``(epoch, layer, metric, value)``: one number of ``dynamics.csv``."""

INPUT_LAYER = "input"
"""The name of layer 0 in depth profiles: the probe inputs themselves (flattened images)."""

def metric_families() -> list[MetricFamily]:
    """The report sections of the metrics: every analysis's families, in analysis order; metrics
    of none go to ``other``."""
    return [family for name in ANALYSES for family in load_analysis(name).families]


def metric_section(metric: str) -> str:
    """The key of the report section a metric belongs to (``other`` when none matches)."""
    family = metric_family(metric)
    return family.key if family is not None else "other"


@dataclass
class ProbedRun:
    """One run's probed numbers, as a report needs them.

    Attributes:
        label: the run's name in figures and tables (``<experiment>/<run_id>`` by default).
        group: runs with the same group (model and dataset) are seeds of one configuration;
            the comparison figure shows their mean and spread.
        layers: probed layers in depth order.
        rows: every number, ``(epoch, layer, metric, value)``; run-level numbers (cost) have
            layer ``""``.
        diagrams: output persistence diagrams ``{epoch: {layer: [H0 (m, 2), H1, ...]}}`` of
            the epochs the report draws (of those probed with topology; ``probe.py`` keeps the
            ones ``reports.diagrams.diagram_epochs`` chooses).
        accuracy: probe-set top-1 accuracy by epoch (empty when not known).
        description: JSON-ready facts for the summary (model, dataset, settings, checkpoints,
            timings).
        artifacts: every analysis's artifacts by checkpoint, ``{analysis: {epoch: {name: value}}}``
            (what its report section draws beyond ``rows``).
        inputs: the compactness numbers of the probe inputs themselves (layer 0 of the depth
            profiles, the same at every epoch), ``{metric: value}``; empty when not measured.
    """

    label: str
    group: str
    layers: list[str]
    rows: list[Row]
    diagrams: dict[int, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    accuracy: dict[int, float] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    inputs: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._values = {(epoch, layer, metric): value for epoch, layer, metric, value in self.rows}

    @property
    def epochs(self) -> list[int]:
        """Probed epochs in order."""
        return sorted({epoch for epoch, _, _, _ in self.rows})

    @property
    def last_epoch(self) -> int:
        return self.epochs[-1]

    def layer_metrics(self) -> list[str]:
        """Names of the per-layer metrics, in the order they were first computed."""
        return list(dict.fromkeys(metric for _, layer, metric, _ in self.rows if layer))

    def metric_layers(self, metric: str) -> list[str]:
        """The layers (in :attr:`layers` order) with any number of ``metric``."""
        found = {layer for _, layer, name in self._values if name == metric}
        return [layer for layer in self.layers if layer in found]

    def value(self, epoch: int, layer: str, metric: str) -> float:
        """One number; NaN when it was not computed."""
        return self._values.get((epoch, layer, metric), math.nan)

    def series(self, layer: str, metric: str) -> tuple[list[int], list[float]]:
        """``(epochs, values)`` of a layer's metric over the epochs where it was computed."""
        epochs = [e for e in self.epochs if (e, layer, metric) in self._values]
        return epochs, [self._values[(e, layer, metric)] for e in epochs]

    def profile_layers(self, metric: str) -> list[str]:
        """The layers of ``metric``'s depth profile: :data:`INPUT_LAYER` first when the probe inputs
        have the metric, then :meth:`metric_layers`."""
        return [INPUT_LAYER] * (metric in self.inputs) + self.metric_layers(metric)

    def profile_value(self, epoch: int, layer: str, metric: str) -> float:
        """A number of a depth profile: the probe inputs' (any epoch) for :data:`INPUT_LAYER`,
        else :meth:`value`."""
        return self.inputs.get(metric, math.nan) if layer == INPUT_LAYER else self.value(epoch, layer, metric)

    def final_accuracy(self) -> Optional[float]:
        """Probe-set accuracy at the last probed epoch, if known."""
        return self.accuracy.get(self.last_epoch)

    def final_artifacts(self, analysis: str) -> dict[str, Any]:
        """The artifacts of ``analysis`` at the last probed epoch ({} when it did not run then)."""
        return self.artifacts.get(analysis, {}).get(self.last_epoch, {})


def runs_by_group(runs: list[ProbedRun]) -> dict[str, list[ProbedRun]]:
    """The runs of each comparison group, groups in the order they first appear."""
    groups: dict[str, list[ProbedRun]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    return groups


def report_metrics(runs: list[ProbedRun]) -> list[str]:
    """Per-layer metrics of all runs, ordered by report section and then first appearance."""
    metrics = list(dict.fromkeys(metric for run in runs for metric in run.layer_metrics()))
    order = [family.key for family in metric_families()] + ["other"]
    return sorted(metrics, key=lambda metric: order.index(metric_section(metric)))


def shared_layers(runs: list[ProbedRun], metric: Optional[str] = None) -> Optional[list[str]]:
    """The runs' common layer list (of the layers with ``metric``, when given) when it is the same
    for every run, else None."""
    layers = [run.layers if metric is None else run.metric_layers(metric) for run in runs]
    return layers[0] if all(found == layers[0] for found in layers) else None


def layer_positions(layers: list[str], shared: bool) -> np.ndarray:
    """x positions of layers in a depth plot: 0, 1, ... when all runs share their layers,
    else relative depth i / (L - 1) in [0, 1], so models of different depths line up."""
    if shared or len(layers) == 1:
        return np.arange(len(layers), dtype=float)
    return np.arange(len(layers), dtype=float) / (len(layers) - 1)


DISTANCE_TITLES = {"w1": "W1", "w2": "W2", "bottleneck": "W∞ (bottleneck)", "displacement": "mean displacement"}
PREFIX_TITLES = {"stability": "input → output", "next": "to next layer", "drift_prev": "drift vs previous epoch",
                 "drift_init": "drift vs initialisation"}

CKA_TITLES = {"cka_prev": "CKA with the previous probed epoch", "cka_first": "CKA with the first probed epoch",
              "cka_last": "CKA with the last probed epoch"}


def metric_title(metric: str) -> str:
    """A readable name of a metric for figure titles, e.g. ``stability_h1_w1`` ->
    ``input → output, H1 W1``; unknown names are returned as they are."""
    if metric == "variance":
        return "total variance"
    if metric.startswith("id_"):
        return f"intrinsic dimension ({metric[3:]})"
    if metric.startswith("lipschitz_"):
        return f"Lipschitz ratio ({metric.removeprefix('lipschitz_')})"
    match = re.match(r"^(stability|next|drift_prev|drift_init)_(?:h(\d+)_)?(w1|w2|bottleneck|displacement)"
                     r"(_sliced|_paired)?$", metric)
    if match:
        prefix, dim, distance, method = match.groups()
        space = f"H{dim} " if dim is not None else "point cloud "
        return (f"{PREFIX_TITLES[prefix]}, {space if distance != 'displacement' else ''}{DISTANCE_TITLES[distance]}"
                f"{f' ({method[1:]})' if method else ''}")
    if metric in CKA_TITLES:
        return CKA_TITLES[metric]
    if metric.startswith("cka_with:"):
        return f"CKA with layer {metric.removeprefix('cka_with:')}"
    match = re.match(r"^h(\d+)_(bars|total_persistence)$", metric)
    if match:
        return f"H{match.group(1)} {'bars' if match.group(2) == 'bars' else 'total persistence'}"
    return metric.replace("_", " ")


UNITS = (
    (r"cka_.+", "CKA (0-1, similarity)"),  # first: a layer's name in cka_with:<layer> may end like another unit's
    (r"variance", "activation units²"),
    (r"participation_ratio", "directions"),
    (r"id_.+", "dimensions"),
    (r"lipschitz_.+", "‖Δ output‖ / ‖Δ input‖"),
    (r".+_(w1|w2|bottleneck|displacement)(_sliced|_paired)?", "distance (activation units)"),
    (r"h\d+_bars", "bars"),
    (r"h\d+_total_persistence", "activation units"),
)
"""``(metric pattern, unit)`` of the dynamics metrics (activation units: those of the probed,
projected points)."""


def metric_unit(metric: str) -> str:
    """The y-axis label of a metric (its unit), "" for metrics of unknown unit."""
    return next((unit for pattern, unit in UNITS if re.fullmatch(pattern, metric)), "")
