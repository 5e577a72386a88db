"""Log a written probe report to W&B (offline unless the user is logged in)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.report import FIGURES_FOLDER
from attnconv_pl.reports.tables import RUN_COLUMNS


def run_summary_values(runs: list[ProbedRun]) -> dict[str, float]:
    """The per-run numbers a W&B run summary shows, keyed ``<record>/<run label>``: probe-set
    accuracy at the last probed epoch, the training records of ``metrics.csv`` (best validation
    accuracy, epochs to the target loss) and the accuracy under each input-noise level
    (``noise_accuracy/<label>/sigma=<level>``). Records a run does not have are left out."""
    values: dict[str, Optional[float]] = {}
    for probed in runs:
        values[f"final_accuracy/{probed.label}"] = probed.final_accuracy()
        if probed.training is not None:
            values[f"best_val_acc/{probed.label}"] = probed.training.best_val_acc
            values[f"epochs_to_target_loss/{probed.label}"] = probed.training.epochs_to_target_loss
        noise_accuracy = probed.final_robustness()
        if noise_accuracy is not None:
            values.update({f"noise_accuracy/{probed.label}/sigma={level:g}": accuracy
                           for level, accuracy in zip(probed.robustness.noise_levels, noise_accuracy)})
    return {key: float(value) for key, value in values.items() if value is not None}


def log_report(out_dir: Path, runs: list[ProbedRun], figures: list[ReportFigure], name: str,
               project: str = "attnconv-pl") -> Path:
    """Log the report in ``out_dir`` as a new W&B run of ``job_type="probe"``: every figure
    (``figures/<name>``), the numbers (``dynamics`` table), the page (``report``) and each run's
    final accuracy, training records and noise accuracy in the summary (:func:`run_summary_values`). Returns the W&B run's local folder (under
    ``out_dir/wandb/``; ``wandb sync`` it when offline)."""
    import wandb

    from attnconv_pl.wandb_mode import configure_wandb_mode

    configure_wandb_mode()
    run = wandb.init(project=project, job_type="probe", name=name, dir=str(out_dir),
                     config={"runs": [probed.label for probed in runs]})
    try:
        run.log({f"figures/{figure.name}": wandb.Image(str(out_dir / FIGURES_FOLDER / figure.file_name))
                 for figure in figures})
        rows = [[probed.label, *row] for probed in runs for row in probed.rows]
        run.log({"dynamics": wandb.Table(columns=list(RUN_COLUMNS), data=rows),
                 "report": wandb.Html((out_dir / "report.html").read_text())})
        run.summary.update(run_summary_values(runs))
        return Path(run.dir).parent
    finally:
        run.finish()
