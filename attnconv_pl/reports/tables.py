"""The report's tables: ``dynamics.csv`` of all runs, the runs probed, their training records and
robustness, and the last-epoch numbers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from attnconv_pl.analyses.training_records import TrainingRecords
from attnconv_pl.io.atomic import atomic_path
from attnconv_pl.io.epoch_table import COLUMNS, write_epochs
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.robustness import final_noise_accuracy

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


RECORDS_NOTE = ("Training records from each run's metrics.csv: best validation accuracy (val/acc as logged) and "
                "the first epoch it was reached; the first epoch whose mean training loss was at or below the "
                "target, of the epochs trained, and the training seconds up to it.")
NOISE_NOTE = ("Accuracy under noise: fraction of inputs classified correctly when Gaussian noise of standard "
              "deviation σ is added to the normalised inputs, at the last probed epoch.")


def final_records(run: ProbedRun) -> Optional[TrainingRecords]:
    """The run's training records at its last probed epoch (None without them)."""
    return run.final_artifacts("training_records").get("records")


def has_robustness(runs: list[ProbedRun]) -> bool:
    """Whether any run was evaluated under input noise (``probe.py --robustness``) at its last epoch."""
    return any(final_noise_accuracy(run) is not None for run in runs)


def has_records(runs: list[ProbedRun]) -> bool:
    """Whether any run has training records or robustness numbers (else no records table)."""
    return has_robustness(runs) or any(final_records(run) is not None for run in runs)


def records_table(runs: list[ProbedRun]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per run) of the training records (from each run's ``metrics.csv``)
    and the accuracy under input noise at the last probed epoch, one column per noise level."""
    records = [final_records(run) for run in runs]
    noisy = [final_noise_accuracy(run) or {} for run in runs]
    targets = sorted({found.target_loss for found in records if found is not None})
    target = f" ≤ {targets[0]:g}" if len(targets) == 1 else " ≤ target"
    levels = sorted({level for accuracy in noisy for level in accuracy})
    header = ["run", "model (group)", "best val acc (epoch)", f"epochs to train loss{target}", "seconds to it",
              "final val acc", *(f"acc σ={level:g}" for level in levels)]
    rows = []
    for run, found, accuracy in zip(runs, records, noisy):
        if found is None:
            training = ["-"] * 4
        else:
            best = ("-" if found.best_val_acc is None
                    else f"{format_number(found.best_val_acc)} ({found.best_val_acc_epoch})")
            reached = ("not reached" if found.epochs_to_target_loss is None
                       else f"{found.epochs_to_target_loss} of {found.epochs}")
            training = [best, reached, format_number(found.seconds_to_target_loss),
                        format_number(found.final_val_acc)]
        rows.append([run.label, run.group, *training, *(format_number(accuracy.get(level)) for level in levels)])
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
