"""The report's tables: ``dynamics.csv`` of all runs, the runs probed and the last-epoch numbers."""

from __future__ import annotations

import math
from pathlib import Path

from attnconv_pl.atomic import atomic_path
from attnconv_pl.dynamics_csv import COLUMNS, write_epochs
from attnconv_pl.reports.records import ProbedRun

RUN_COLUMNS = ("run", *COLUMNS)
"""``run,epoch,layer,metric,value``: the callback's schema with the run's label first."""


def write_dynamics_csv(path: Path, runs: list[ProbedRun]) -> None:
    """Write every number of ``runs`` to ``path`` (replacing the file, atomically)."""
    with atomic_path(path) as fresh:
        write_epochs(fresh, [(run.label, *row) for run in runs for row in run.rows], columns=RUN_COLUMNS)


def format_number(value: float | None) -> str:
    """A number for a table: 4 significant digits, ``-`` when missing or NaN."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.4g}"


def last_epoch_table(runs: list[ProbedRun], metrics: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per run and layer) of ``metrics`` at each run's last epoch."""
    header = ["run", "epoch", "layer", *metrics]
    rows = [[run.label, str(run.last_epoch), layer,
             *(format_number(run.value(run.last_epoch, layer, metric)) for metric in metrics)]
            for run in runs for layer in run.layers]
    return header, rows


def probed_table(runs: list[ProbedRun]) -> tuple[list[str], list[list[str]]]:
    """Header and rows describing each run: model, data, epochs, layers, accuracy, settings."""
    header = ["run", "model (group)", "training seed", "probe set", "epochs", "layers", "probe-set accuracy",
              "probe settings"]
    rows = []
    for run in runs:
        data = run.description.get("dataset", {})
        settings = run.description.get("settings", {})
        rows.append([
            run.label, run.group, "-" if run.description.get("seed") is None else str(run.description["seed"]),
            f"{data.get('name', '?')} {data.get('split', '?')}, {data.get('probe_inputs', '?')} inputs",
            ", ".join(map(str, run.epochs)), ", ".join(run.layers),
            format_number(run.final_accuracy()),
            settings_text(settings),
        ])
    return header, rows


def settings_text(settings: dict) -> str:
    """The probe settings that tell runs apart, in a few words (all of them are in summary.json)."""
    if not settings:
        return "-"
    id_methods = "+".join(settings.get("id_methods", ()))
    topology = (f"H0-H{settings.get('max_dim')} on {settings.get('max_points')} points"
                if settings.get("topology") else "no topology")
    return (f"{settings.get('representation')}, project_dim {settings.get('project_dim')}, ID {id_methods}, "
            f"{topology}, {settings.get('snapshot_dtype')}, probe seed {settings.get('seed')}")
