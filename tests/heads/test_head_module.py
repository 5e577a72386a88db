"""HeadModule trains heads through a Lightning Trainer on frozen features and logs its certificate."""

import csv
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from train_helpers import REPO, launch_train

from attnconv_pl.heads import HeadModule
from attnconv_pl.heads.frozen_features import FrozenFeaturesDataModule
from attnconv_pl.heads.module import certificate_key

CERTIFICATE = ("objective", "data_loss", "regulariser", "duality_gap", "rank")


def train(tmp_path, datamodule, module, **trainer_options):
    trainer = pl.Trainer(logger=CSVLogger(tmp_path), enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", **trainer_options)
    trainer.fit(module, datamodule=datamodule)
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as handle:
        return trainer, list(csv.DictReader(handle))


def head_module(datamodule, **options):
    return HeadModule(num_classes=datamodule.num_classes, in_chans=datamodule.in_chans,
                      image_size=datamodule.image_size, **options)


def test_lbfgs_trains_a_convex_head_and_logs_its_certificate(tmp_path):
    datamodule = FrozenFeaturesDataModule(cache_dir=str(tmp_path / "features"), batch_size=2048)
    module = head_module(datamodule, head="linear_attention", head_kwargs={"heads": 4}, lbfgs_iterations=10)
    trainer, rows = train(tmp_path, datamodule, module, max_epochs=2, precision="64-true")
    epochs = [row for row in rows if row.get(certificate_key("duality_gap"))]
    assert len(epochs) == 2
    objectives = [float(row[certificate_key("objective")]) for row in epochs]
    assert objectives[1] < objectives[0]
    for row in epochs:
        assert float(row[certificate_key("duality_gap")]) >= 0
        assert 1 <= float(row[certificate_key("rank")]) <= 4
    assert {"train/loss", "val/acc", "val/acc_top5"} <= set(trainer.callback_metrics)
    assert float(trainer.callback_metrics["val/acc"]) > 0.3


def test_adamw_trains_any_head_in_mini_batches(tmp_path):
    datamodule = FrozenFeaturesDataModule(cache_dir=str(tmp_path / "features"), batch_size=64)
    module = head_module(datamodule, head="attention", head_kwargs={"heads": 2}, loss="cross_entropy",
                         optimizer="adamw", lr=0.01)
    trainer, rows = train(tmp_path, datamodule, module, max_epochs=1, limit_train_batches=3, limit_val_batches=2)
    assert not any(key.startswith("certificate/") for key in trainer.callback_metrics)
    assert "val/acc" in trainer.callback_metrics


def test_a_head_module_reloads_from_its_checkpoint(tmp_path):
    module = HeadModule(head="fno", head_kwargs={"heads": 3}, in_chans=8, image_size=8)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "head.ckpt")
    reloaded = HeadModule.load_from_checkpoint(tmp_path / "head.ckpt")
    assert reloaded.hparams.head == "fno" and reloaded.hparams.head_kwargs == {"heads": 3}
    tokens = torch.randn(2, 8, 8)
    assert torch.equal(reloaded(tokens), module(tokens))


def test_train_py_runs_the_digits_config(tmp_path, monkeypatch):
    launch_train(monkeypatch, tmp_path, "--config", str(REPO / "configs" / "convex_heads_digits.yaml"),
                 "--trainer.max_epochs", "1", "--model.init_args.lbfgs_iterations", "3", "--trainer.logger", "false",
                 "--data.init_args.cache_dir", str(tmp_path / "features"), "--trainer.enable_progress_bar", "false")
    metrics = next(tmp_path.glob("convex_heads_digits/*/metrics.csv")).read_text().splitlines()
    assert len(metrics) == 2  # header and epoch 1
