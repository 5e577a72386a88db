"""Assembling a probed run for the report: its records (``ProbedRun``), its comparison group, its
description in ``summary.json``, its training curves and records, and the compactness of its
probe inputs."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from attnconv_pl.analyses.dynamics.metrics import compactness_metrics
from attnconv_pl.analyses.training_records import (
    DEFAULT_TARGET_LOSS,
    METRICS_FILE,
    TrainingRecordsAnalysis,
    TrainingRecordsSettings,
    loss_floor,
    read_metrics,
)
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.reports.records import INPUT_LAYER


def metrics_rows(prober) -> list[dict[str, float]]:
    """The rows of the run's ``metrics.csv`` ([] without a run directory or the file).

    Raises:
        ProbeInputError: the file is not a metrics.csv.
    """
    path = prober.run.run_dir / METRICS_FILE if prober.run.run_dir is not None else None
    if path is None or not path.is_file():
        return []
    try:
        return read_metrics(path)
    except ValueError as error:
        raise ProbeInputError(f"{error}; metrics.csv is written by train.py, restore it or move it away") from error


def training_records_of(prober, rows: list[dict[str, float]], target: Optional[float]):
    """The training records of the run's ``metrics.csv`` ``rows`` for the ``target`` loss (None when
    not asked for (``target`` None) or before the first epoch) and the facts the summary adds to them."""
    if target is None or not rows:
        return None, {}
    floor = loss_floor(float(prober.hparams.get("label_smoothing") or 0.0), int(prober.hparams["num_classes"]))
    analysis = TrainingRecordsAnalysis(TrainingRecordsSettings(target))
    records = analysis.run(int(max(row["epoch"] for row in rows)), rows).artifacts["records"]
    return records, {"metrics_csv": str(prober.run.run_dir / METRICS_FILE), "loss_floor": floor}


def input_metrics(prober) -> dict[str, float]:
    """The compactness numbers (``variance``, ``participation_ratio``, ``id_<method>``) of the dynamics
    probe set's inputs themselves, flattened to (N, C*H*W) in float32 and measured by the same
    function as every layer's output: layer 0 of the report's depth profiles ({} without dynamics)."""
    probe_set = prober.probe_set
    if probe_set is None:
        return {}
    return compactness_metrics(INPUT_LAYER, probe_set.images.flatten(1).float(), prober.probe_settings)


def unreachable_target(record) -> Optional[str]:
    """A warning when a run's target loss is at or below the smallest loss it can reach."""
    floor = record.description.get("training", {}).get("loss_floor")
    if record.training is None or floor is None or record.training.target_loss > floor:
        return None
    return (f"--target-loss {record.training.target_loss:g} is at or below the smallest mean training loss run "
            f"{record.label} can reach ({floor:.4f}, its label smoothing's floor): its epochs to target are never "
            "reached; give a larger --target-loss")


def probed_run(prober, outcomes: list, label: str, target: Optional[float] = DEFAULT_TARGET_LOSS):
    """The report record of a probed run (its comparison group is set once all runs are known);
    ``target``: the target loss of its training records (None: no training records)."""
    from attnconv_pl.reports.records import ProbedRun, RobustnessRecord

    artifacts = {name: {o.epoch: o.results[name].artifacts for o in outcomes} for name in prober.analyses}
    diagrams = {epoch: found["diagrams"] for epoch, found in artifacts.get("dynamics", {}).items()
                if found.get("diagrams")}
    curves = metrics_rows(prober)
    training, training_facts = training_records_of(prober, curves, target)
    robustness = None
    if "robustness" in prober.analyses and outcomes:
        measured = artifacts["robustness"]
        robustness = RobustnessRecord(
            noise_levels=prober.analyses["robustness"].settings.noise_levels,
            accuracy={epoch: found["accuracy"] for epoch, found in measured.items()},
            **measured[outcomes[-1].epoch]["inputs"])
    description = run_description(prober, outcomes)
    if training is not None:
        description["training"] = training_facts
    rows = [row for o in outcomes for row in o.rows()]
    return ProbedRun(
        label=label, group="", layers=list(dict.fromkeys([*prober.layers, *(row[1] for row in rows if row[1])])),
        rows=rows,
        diagrams=dict(sorted(diagrams.items())),
        accuracy={o.epoch: o.accuracy for o in outcomes if o.accuracy is not None},
        description=description, training=training, robustness=robustness, artifacts=artifacts,
        inputs=input_metrics(prober), curves=curves,
    )


def group_key(prober) -> tuple[str, str, str]:
    """What makes runs seeds of one configuration: (arch, model options, training data module)."""
    return str(prober.hparams.get("arch")), options_text(prober.hparams.get("arch_kwargs")), prober.data_class_path


def options_text(options: Optional[dict[str, Any]]) -> str:
    """Model options as ``key=value`` words in key order ("" for none)."""
    return " ".join(f"{key}={value}" for key, value in sorted((options or {}).items()))


def group_labels(keys: list[tuple[str, str, str]]) -> list[str]:
    """Comparison-group labels of runs keyed by (arch, model options, data class path): the
    arch, then the dataset, then the options, each added only where needed to tell a group
    from the others (runs with equal keys, e.g. seeds, share their label)."""
    def label(key: tuple[str, str, str], depth: int) -> str:
        arch, options, data = key
        parts = [arch, data.rsplit(".", 1)[-1].removesuffix("DataModule").lower(), options]
        return " ".join(part for part in parts[:depth] if part)

    distinct = list(dict.fromkeys(keys))
    chosen = {}
    for key in distinct:
        depth = next((d for d in (1, 2) if all(label(other, d) != label(key, d) for other in distinct
                                                if other != key)), 3)
        chosen[key] = label(key, depth)
    return [chosen[key] for key in keys]


def run_description(prober, run_outcomes: list) -> dict[str, Any]:
    """The JSON-ready facts of a probed run for ``summary.json`` and the report's run table."""
    dynamics, hparams, probe_set = prober.probe_settings, prober.hparams, prober.probe_set
    dataset = {"trained_on": prober.data_class_path}
    if probe_set is not None:
        dataset = {"name": probe_set.dataset, "split": probe_set.split, "probe_inputs": len(probe_set.indices),
                   **dataset}
    return {
        "run_dir": str(prober.run.run_dir) if prober.run.run_dir else None,
        "checkpoints": [str(o.path) for o in run_outcomes],
        "seed": prober.run_config.get("seed_everything"),
        "model": {key: hparams.get(key) for key in ("arch", "arch_kwargs", "num_classes", "in_chans", "image_size")},
        "dataset": dataset,
        "analyses": list(prober.analyses),
        "settings": {**dataclasses.asdict(dynamics), "layers": dynamics.layers or "model's probe_layers"},
        "analysis_settings": {name: dataclasses.asdict(analysis.settings)
                              for name, analysis in prober.analyses.items() if name != "dynamics"},
        "timings": {"data_seconds": prober.data_seconds,
                    "checkpoints": [{"epoch": o.epoch, **o.seconds} for o in run_outcomes]},
    }
