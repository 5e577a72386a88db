"""What one probed epoch sends to a W&B run."""

import math
from pathlib import Path

import numpy as np
import wandb

from attnconv_pl.analyses.base import AnalysisResult
from callbacks._wandb import log_to_wandb


class RecordingRun:
    """Stands in for a ``wandb`` run: records ``define_metric`` and ``log`` calls."""

    def __init__(self):
        self.step_metrics, self.logged = {}, []

    def define_metric(self, name, step_metric=None):
        self.step_metrics[name] = step_metric

    def log(self, payload):
        self.logged.append(payload)


def test_numbers_are_logged_against_epoch_with_table_and_figure():
    result = AnalysisResult(3)
    result.values = {("mixer", "variance"): 2.5, ("mixer", "id_twonn"): math.nan, ("", "overhead_seconds"): 0.7}
    result.artifacts["diagrams"] = {"mixer": [np.array([[0.0, 1.0]]), np.array([[0.5, 0.9]])]}
    run = RecordingRun()
    log_to_wandb(run, result, ["mixer"])
    assert run.step_metrics["dynamics/*"] == "epoch"
    (payload,) = run.logged
    assert payload["epoch"] == 3
    assert payload["dynamics/mixer/variance"] == 2.5 and payload["dynamics/overhead_seconds"] == 0.7
    assert "dynamics/mixer/id_twonn" not in payload  # NaN stays out of the charts, it is in the table
    table = payload["dynamics/table"]
    assert isinstance(table, wandb.Table) and len(table.data) == 3
    assert [3, "mixer", "variance", 2.5] in table.data
    assert isinstance(payload["dynamics/persistence"], wandb.Image)


def test_every_analysis_plots_its_numbers_against_epoch_on_wandb_and_sends_them_to_other_loggers(tmp_path):
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from callbacks._wandb import log_epoch_values

    result = AnalysisResult(4)
    result.values = {("block1", "snp_acc"): 0.75, ("block1", "andc_acc"): math.nan, ("", "seconds"): 1.5}
    wandb_logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    run = wandb_logger._experiment = RecordingRun()
    log_epoch_values(wandb_logger, "single_node", result, step=120)
    assert run.step_metrics == {"epoch": None, "single_node/*": "epoch"}
    (payload,) = run.logged
    assert payload == {"epoch": 4, "single_node/block1/snp_acc": 0.75, "single_node/seconds": 1.5,
                       "trainer/global_step": 120}

    csv_logger = CSVLogger(tmp_path, name="csv")
    log_epoch_values(csv_logger, "stiffness", result, step=120)
    csv_logger.save()
    written = (Path(csv_logger.log_dir) / "metrics.csv").read_text().splitlines()
    assert written[0].split(",") == ["epoch", "step", "stiffness/block1/snp_acc", "stiffness/seconds"]
    assert written[1].split(",") == ["4", "120", "0.75", "1.5"]
