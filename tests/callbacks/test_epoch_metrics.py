"""EpochMetrics: metrics.csv against values recomputed from the model and the batches, resume, DDP."""

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import Logger
from torch.nn import functional
from train_helpers import REPO

from attnconv_pl.analyses.training_records import COLUMNS, read_metrics
from attnconv_pl.cli import RUN_ID_ENV, TrainCLI
from attnconv_pl.data import DigitsDataModule
from attnconv_pl.module import ClassifierModule
from callbacks import EpochMetrics


class BatchLosses(pl.Callback):
    """The training loss and size of every batch, by 1-based epoch."""

    def __init__(self):
        self.losses = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.setdefault(trainer.current_epoch + 1, []).append((float(outputs["loss"]), len(batch[1])))


class RecordingLogger(Logger):
    """Records every row logged to it."""

    def __init__(self):
        super().__init__()
        self.rows = []

    name, version = "recording", 0

    def log_metrics(self, metrics, step=None):
        self.rows.append(dict(metrics))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def make_trainer(root, max_epochs, *callbacks, logger=False, **options):
    return pl.Trainer(default_root_dir=root, max_epochs=max_epochs, accelerator="cpu", logger=logger,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, callbacks=[EpochMetrics(), *callbacks], **options)


def make_module():
    torch.manual_seed(0)
    return ClassifierModule(arch="conv_net", num_classes=10, in_chans=1, image_size=16, lr=3e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch run: (run dir, module, data module, batch losses, trainer)."""
    root = tmp_path_factory.mktemp("run")
    data, module, losses = DigitsDataModule(batch_size=64), make_module(), BatchLosses()
    trainer = make_trainer(root, 2, losses)
    trainer.fit(module, datamodule=data)
    return root, module, data, losses, trainer


def test_one_row_per_completed_epoch_with_every_column(trained):
    root, *_ = trained
    assert (root / "metrics.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    rows = read_metrics(root / "metrics.csv")
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["epoch_seconds"] > 0 for row in rows)
    assert not list(root.glob(".*tmp*")), "temporary file left behind"


def test_training_loss_is_the_mean_over_the_epochs_samples(trained):
    root, _, _, losses, _ = trained
    for row in read_metrics(root / "metrics.csv"):
        batches = losses.losses[row["epoch"]]
        expected = sum(loss * size for loss, size in batches) / sum(size for _, size in batches)
        assert row["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_validation_numbers_are_those_of_the_final_model_on_the_val_split(trained):
    root, module, data, _, _ = trained
    module.eval()
    with torch.no_grad():
        batches = list(data.val_dataloader())
        logits = torch.cat([module(images) for images, _ in batches])
        labels = torch.cat([labels for _, labels in batches])
    last = read_metrics(root / "metrics.csv")[-1]
    assert last["val_loss"] == pytest.approx(functional.cross_entropy(logits, labels).item(), rel=1e-5)
    for column in ("val_acc", "val_acc_top5"):  # the module's accuracy definitions, on all val logits at once
        metric = module.accuracy[column].clone()
        metric.reset()
        assert last[column] == pytest.approx(metric(logits, labels).item(), abs=1e-6), column


def test_loggers_get_the_epoch_level_metrics_with_the_completed_epochs_of_metrics_csv(tmp_path):
    """``epoch`` of an epoch-level row is the ``epoch`` of the metrics.csv row with the same
    numbers (Lightning would log the 0-based epoch index); per-step rows keep Lightning's."""
    logger = RecordingLogger()
    trainer = make_trainer(tmp_path, 2, logger=logger, log_every_n_steps=10)
    trainer.fit(make_module(), datamodule=DigitsDataModule(batch_size=64))
    rows = read_metrics(tmp_path / "metrics.csv")
    for key, column in (("train/loss", "train_loss"), ("train/acc", "train_acc"), ("val/acc", "val_acc")):
        logged = {row["epoch"]: row[key] for row in logger.rows if key in row}
        assert logged == pytest.approx({row["epoch"]: row[column] for row in rows}), key
    steps = [row for row in logger.rows if "train/loss_step" in row]
    assert {row["epoch"] for row in steps} == {0, 1}  # the epochs completed before the step
    assert not [key for row in logger.rows for key in row if key.endswith("_epoch")]


def test_epochs_without_validation_have_no_validation_numbers(tmp_path):
    make_trainer(tmp_path, 2, check_val_every_n_epoch=2).fit(make_module(), datamodule=DigitsDataModule(batch_size=64))
    first, second = read_metrics(tmp_path / "metrics.csv")
    assert all(math.isnan(first[column]) for column in ("val_loss", "val_acc", "val_acc_top5"))
    assert not math.isnan(first["train_loss"]) and 0 <= second["val_acc"] <= 1


def test_resume_replaces_its_epochs_and_drops_those_of_the_abandoned_continuation(trained, tmp_path):
    root, _, _, _, trainer = trained
    checkpoint = tmp_path / "after2.ckpt"
    trainer.save_checkpoint(checkpoint)
    (tmp_path / "metrics.csv").write_text((root / "metrics.csv").read_text() + "".join(
        f"{epoch},9.0,0.0,9.0,0.0,0.0,1.0\n" for epoch in (3, 4, 5)))  # a continuation that went further
    before = read_metrics(root / "metrics.csv")
    make_trainer(tmp_path, 3).fit(make_module(), datamodule=DigitsDataModule(batch_size=64), ckpt_path=checkpoint)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[:2] == before
    assert rows[2]["train_loss"] < 9.0


def test_every_training_run_writes_metrics_before_its_checkpoints(tmp_path, monkeypatch):
    monkeypatch.delenv(RUN_ID_ENV, raising=False)  # TrainCLI sets it; restored when the test ends
    cli = TrainCLI(args=["--config", str(REPO / "configs" / "default.yaml"), "--runs_dir", str(tmp_path),
                         "--trainer.logger", "false"])
    kinds = [type(callback).__name__ for callback in cli.trainer.callbacks]
    assert kinds.count("EpochMetrics") == 1
    assert kinds.index("EpochMetrics") < kinds.index("EpochCheckpoint")


