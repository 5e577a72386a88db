"""Log a written probe report to W&B (offline unless the user is logged in): the numbers as
tables, line charts and series that W&B can re-plot, into each probed run's own training run
when its run directory names one, and the figures and the page."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from attnconv_pl.io.epoch_table import COLUMNS
from attnconv_pl.io.wandb_run import metric_key
from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun, metric_title
from attnconv_pl.reports.report import FIGURES_FOLDER
from attnconv_pl.reports.robustness import final_noise_accuracy
from attnconv_pl.reports.tables import RUN_COLUMNS, final_records


def run_summary_values(probed: ProbedRun) -> dict[str, float]:
    """The numbers of one probed run that its W&B run summary shows, under the same keys in every
    run so that W&B's run table compares runs: ``final_accuracy`` (probe-set accuracy at the last
    probed epoch), the training records of ``metrics.csv`` (``best_val_acc``,
    ``epochs_to_target_loss``) and the accuracy under each input-noise level
    (``noise_accuracy/sigma=<level>``). Records the run does not have are left out."""
    values: dict[str, Optional[float]] = {"final_accuracy": probed.final_accuracy()}
    records = final_records(probed)
    if records is not None:
        values["best_val_acc"] = records.best_val_acc
        values["epochs_to_target_loss"] = records.epochs_to_target_loss
    values.update({f"noise_accuracy/sigma={level:g}": accuracy
                   for level, accuracy in (final_noise_accuracy(probed) or {}).items()})
    return {key: float(value) for key, value in values.items() if value is not None}


WANDB_ID_FILE = "wandb_id"
"""The file of a run directory holding its training run's W&B id (written by ``train.py``)."""
DEFAULT_PROJECT = "attnconv-pl"


@dataclass(frozen=True)
class TrainingWandbRun:
    """Where a probed run's training run lives in W&B: its id, project and entity (None: the
    user's default) from the run directory's ``wandb_id`` and ``config.yaml``."""

    run_dir: Path
    id: str
    project: str
    entity: Optional[str]


def training_wandb_run(probed: ProbedRun) -> Optional[TrainingWandbRun]:
    """The W&B run ``train.py`` logged ``probed`` to (None without a run directory or its
    ``wandb_id`` file)."""
    from attnconv_pl.io.run_dir import read_run_config

    run_dir = probed.description.get("run_dir")
    path = Path(run_dir) / WANDB_ID_FILE if run_dir else None
    if path is None or not path.is_file() or not path.read_text().strip():
        return None
    loggers = (read_run_config(path.parent).get("trainer") or {}).get("logger")
    wandb_args = next((entry.get("init_args") or {} for entry in (loggers if isinstance(loggers, list) else [loggers])
                       if isinstance(entry, dict) and str(entry.get("class_path", "")).endswith("WandbLogger")), {})
    return TrainingWandbRun(path.parent, path.read_text().strip(), wandb_args.get("project") or DEFAULT_PROJECT,
                            wandb_args.get("entity"))


def number_series(probed: ProbedRun) -> list[dict[str, Any]]:
    """One payload per probed epoch: ``probe/epoch`` and every finite number under
    ``probe/<layer>/<metric>`` (``probe/<metric>`` for run-level ones), the keys the training
    callback uses under ``dynamics/``; plotted against ``probe/epoch``."""
    payloads: dict[int, dict[str, Any]] = {}
    for epoch, layer, metric, value in probed.rows:
        if math.isfinite(value):
            payloads.setdefault(epoch, {"probe/epoch": epoch})[metric_key(layer, metric, prefix="probe")] = value
    return [payloads[epoch] for epoch in sorted(payloads)]


def number_charts(probed: ProbedRun, prefix: str) -> dict[str, Any]:
    """The numbers of ``probed`` as W&B tables and line charts, under ``prefix``:

    - ``<prefix>/dynamics``: table ``epoch, layer, metric, value`` of every number;
    - ``<prefix>/probe_inputs``: table ``metric, value`` of the probe inputs' own numbers (layer 0);
    - ``<prefix>/epochs/<metric>``: one line per layer against completed epochs;
    - ``<prefix>/depth/<metric>``: one line per probed epoch against the layer's index (0: the probe
      inputs where they have the metric, see the depth profiles of the report).
    """
    import wandb

    charts: dict[str, Any] = {
        f"{prefix}/dynamics": wandb.Table(columns=list(COLUMNS), data=[list(row) for row in probed.rows]),
        f"{prefix}/probe_inputs": wandb.Table(columns=["metric", "value"],
                                              data=[[metric, value] for metric, value in probed.inputs.items()]),
    }
    for metric in probed.layer_metrics():
        layers = probed.metric_layers(metric)
        series = [probed.series(layer, metric) for layer in layers]
        charts[f"{prefix}/epochs/{metric}"] = wandb.plot.line_series(
            xs=[epochs for epochs, _ in series], ys=[values for _, values in series], keys=layers,
            title=f"{metric_title(metric)} per layer", xname="completed epochs")
        profile_layers = probed.profile_layers(metric)
        epochs = sorted({epoch for epochs, _ in series for epoch in epochs})
        charts[f"{prefix}/depth/{metric}"] = wandb.plot.line_series(
            xs=list(range(len(profile_layers))),
            ys=[[probed.profile_value(epoch, layer, metric) for layer in profile_layers] for epoch in epochs],
            keys=[f"epoch {epoch}" for epoch in epochs],
            title=f"{metric_title(metric)} against depth ({', '.join(profile_layers)})", xname="layer index")
    return charts


def log_numbers(run, probed: ProbedRun, prefix: str) -> None:
    """Log ``probed``'s numbers into its training run's W&B ``run``: the series of
    :func:`number_series` and the tables and charts of :func:`number_charts`."""
    run.define_metric("probe/epoch")
    run.define_metric("probe/*", step_metric="probe/epoch")
    for payload in number_series(probed):
        run.log(payload)
    run.log(number_charts(probed, prefix))


def log_report_files(run, out_dir: Path, runs: list[ProbedRun], figures: list[ReportFigure]) -> None:
    """Every figure (``figures/<name>``), the numbers of all runs (``dynamics`` table), the page
    (``report``) and a ``run_summaries`` table: one row per run, its label and its
    :func:`run_summary_values`."""
    import wandb

    run.log({f"figures/{figure.name}": wandb.Image(str(out_dir / FIGURES_FOLDER / figure.file_name))
             for figure in figures})
    rows = [[probed.label, *row] for probed in runs for row in probed.rows]
    summaries = {probed.label: run_summary_values(probed) for probed in runs}
    keys = list(dict.fromkeys(key for values in summaries.values() for key in values))
    run.log({"dynamics": wandb.Table(columns=list(RUN_COLUMNS), data=rows),
             "run_summaries": wandb.Table(columns=["run", *keys], data=[
                 [label, *(values.get(key) for key in keys)] for label, values in summaries.items()]),
             "report": wandb.Html((out_dir / "report.html").read_text())})


def log_report(out_dir: Path, runs: list[ProbedRun], figures: list[ReportFigure], name: str,
               project: str = DEFAULT_PROJECT) -> list[Path]:
    """Log the report in ``out_dir`` to W&B (offline unless the user is logged in).

    Each probed run whose run directory names its training run (``wandb_id``) gets its numbers
    in that run, resumed (:func:`log_numbers`: series against ``probe/epoch``, tables, line
    charts under ``probe_report/``), and its :func:`run_summary_values` in that run's summary
    (the same keys in every run). The report itself (figures, page, all numbers) goes into
    the training run too when it is the only run probed, else into a new run of
    ``job_type="probe"`` named ``name``, which also holds the numbers of runs without a training
    run (under ``probe_report/<label>/``; its summary holds the summary values only when it
    reports one run).

    Returns:
        The local folder of every W&B run written (``wandb sync`` them when offline).
    """
    import wandb

    from attnconv_pl.io.wandb_mode import configure_wandb_mode

    configure_wandb_mode()
    folders, unlogged = [], []
    for probed in runs:
        training = training_wandb_run(probed)
        if training is None:
            unlogged.append(probed)
            continue
        run = wandb.init(id=training.id, resume="allow", project=training.project, entity=training.entity,
                         dir=str(training.run_dir), reinit="finish_previous")
        try:
            log_numbers(run, probed, "probe_report")
            run.summary.update(run_summary_values(probed))
            if len(runs) == 1:
                log_report_files(run, out_dir, runs, figures)
            folders.append(Path(run.dir).parent)
        finally:
            run.finish()
    if len(runs) == 1 and not unlogged:
        return folders
    run = wandb.init(project=project, job_type="probe", name=name, dir=str(out_dir), reinit="finish_previous",
                     config={"runs": [probed.label for probed in runs]})
    try:
        for probed in unlogged:
            run.log(number_charts(probed, f"probe_report/{probed.label}"))
        log_report_files(run, out_dir, runs, figures)
        if len(runs) == 1:
            run.summary.update(run_summary_values(runs[0]))
        return [*folders, Path(run.dir).parent]
    finally:
        run.finish()
