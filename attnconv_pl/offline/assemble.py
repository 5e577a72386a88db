"""Assembling a probed run for the report: its records (``ProbedRun``), its comparison group, its
description in ``summary.json``, and the compactness of its probe inputs."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from attnconv_pl.analyses.dynamics.metrics import compactness_metrics
from attnconv_pl.reports.records import INPUT_LAYER


def input_metrics(prober) -> dict[str, float]:
    """The compactness numbers (``variance``, ``participation_ratio``, ``id_<method>``) of the dynamics
    probe set's inputs themselves, flattened to (N, C*H*W) in float32 and measured by the same
    function as every layer's output: layer 0 of the report's depth profiles ({} without dynamics)."""
    probe_set = prober.probe_set
    if probe_set is None:
        return {}
    return compactness_metrics(INPUT_LAYER, probe_set.images.flatten(1).float(), prober.probe_settings)


def unreachable_target(record) -> Optional[str]:
    """A warning when a run's target loss is at or below the smallest loss it can reach (from its
    training records at the last probed epoch)."""
    found = record.final_artifacts("training_records")
    records, floor = found.get("records"), found.get("loss_floor")
    if records is None or floor is None or records.target_loss > floor:
        return None
    return (f"--training_records.target_loss {records.target_loss:g} is at or below the smallest mean training "
            f"loss run {record.label} can reach ({floor:.4f}, its label smoothing's floor): its epochs to target "
            "are never reached; give a larger --training_records.target_loss")


def probed_run(prober, outcomes: list, label: str):
    """The report record of a probed run (its comparison group is set once all runs are known); with
    the similarity analysis, its ``cka_last`` rows (each epoch against the last), after which only
    the last epoch's Gram matrices are kept."""
    from attnconv_pl.reports.records import ProbedRun
    from attnconv_pl.reports.similarity import cka_last_rows, keep_last_grams

    artifacts = {name: {o.epoch: o.results[name].artifacts for o in outcomes} for name in prober.analyses}
    diagrams = {epoch: found["diagrams"] for epoch, found in artifacts.get("dynamics", {}).items()
                if found.get("diagrams")}
    rows = [row for o in outcomes for row in o.rows()]
    if "similarity" in artifacts:
        rows += cka_last_rows(artifacts["similarity"])
        artifacts["similarity"] = keep_last_grams(artifacts["similarity"])
    return ProbedRun(
        label=label, group="", layers=list(dict.fromkeys([*prober.layers, *(row[1] for row in rows if row[1])])),
        rows=rows,
        diagrams=dict(sorted(diagrams.items())),
        accuracy={o.epoch: o.accuracy for o in outcomes if o.accuracy is not None},
        description=run_description(prober, outcomes), artifacts=artifacts, inputs=input_metrics(prober),
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
