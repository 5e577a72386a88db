"""``summary.json``: per run, the model, the data, the final accuracy and the last epoch's numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from attnconv_pl.analyses import list_analyses
from attnconv_pl.io.atomic import atomic_write_text
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.sections import section_module


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None (strict JSON), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    return value


def run_summary(run: ProbedRun) -> dict[str, Any]:
    """One run's entry: its label, group, description (model, dataset, settings, checkpoints,
    timings), probe-set accuracy, ``last_epoch_metrics[layer][metric]``, the compactness numbers of
    the probe inputs themselves (``probe_inputs_metrics[metric]``), then the entries of each
    analysis's section module (its ``summary(run)``, in analysis order: ``training``,
    ``robustness``)."""
    last = run.last_epoch
    last_metrics: dict[str, dict[str, float]] = {layer: {} for layer in run.layers}
    for epoch, layer, metric, value in run.rows:
        if epoch == last and layer:
            last_metrics.setdefault(layer, {})[metric] = value
    return {
        "label": run.label,
        "group": run.group,
        **run.description,
        "epochs": run.epochs,
        "layers": run.layers,
        "final_accuracy": run.final_accuracy(),
        "accuracy": {str(epoch): value for epoch, value in sorted(run.accuracy.items())},
        "last_epoch": last,
        "last_epoch_metrics": last_metrics,
        "probe_inputs_metrics": run.inputs,
        **{key: value for module in filter(None, map(section_module, list_analyses())) if hasattr(module, "summary")
           for key, value in module.summary(run).items()},
    }


def write_summary(path: Path, runs: list[ProbedRun], context: dict[str, Any]) -> None:
    """Write ``{**context, "runs": [run_summary(run), ...]}`` to ``path`` atomically."""
    document = {**context, "runs": [run_summary(run) for run in runs]}
    atomic_write_text(path, json.dumps(json_ready(document), indent=2) + "\n")
