"""Log a written probe report to W&B (offline unless the user is logged in)."""

from __future__ import annotations

from pathlib import Path

from attnconv_pl.reports.figures import ReportFigure
from attnconv_pl.reports.records import ProbedRun
from attnconv_pl.reports.report import FIGURES_FOLDER
from attnconv_pl.reports.tables import RUN_COLUMNS


def log_report(out_dir: Path, runs: list[ProbedRun], figures: list[ReportFigure], name: str,
               project: str = "attnconv-pl") -> Path:
    """Log the report in ``out_dir`` as a new W&B run of ``job_type="probe"``: every figure
    (``figures/<name>``), the numbers (``dynamics`` table), the page (``report``) and each run's
    final probe-set accuracy in the summary. Returns the W&B run's local folder (under
    ``out_dir/wandb/``; ``wandb sync`` it when offline)."""
    import wandb

    from attnconv_pl.cli import configure_wandb_mode

    configure_wandb_mode()
    run = wandb.init(project=project, job_type="probe", name=name, dir=str(out_dir),
                     config={"runs": [probed.label for probed in runs]})
    try:
        run.log({f"figures/{figure.name}": wandb.Image(str(out_dir / FIGURES_FOLDER / figure.file_name))
                 for figure in figures})
        rows = [[probed.label, *row] for probed in runs for row in probed.rows]
        run.log({"dynamics": wandb.Table(columns=list(RUN_COLUMNS), data=rows),
                 "report": wandb.Html((out_dir / "report.html").read_text())})
        run.summary.update({f"final_accuracy/{probed.label}": probed.final_accuracy()
                            for probed in runs if probed.final_accuracy() is not None})
        return Path(run.dir).parent
    finally:
        run.finish()
