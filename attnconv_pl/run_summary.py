"""What a finished training run prints: where its files are and how to look at them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only


def wandb_run_dir(trainer: pl.Trainer) -> Optional[Path]:
    """The local folder of the W&B run (``.../wandb/offline-run-*`` or ``run-*``), if any."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            return Path(logger.experiment.dir).parent
    return None


def summary_lines(trainer: pl.Trainer, run_dir: Path) -> list[str]:
    """Human-readable lines naming the run directory, checkpoints, metrics and the W&B run."""
    lines = [f"run directory: {run_dir}"]
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    if checkpoints:
        lines.append(f"checkpoints:   {run_dir / 'checkpoints'} ({', '.join(p.name for p in checkpoints)})")
    for label, name in (("dynamics:", "dynamics.csv"), ("metrics:", "metrics.csv")):
        if (run_dir / name).is_file():
            lines.append(f"{label:<15}{run_dir / name}")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if metrics:
        lines.append("final:         " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    wandb_dir = wandb_run_dir(trainer)
    if wandb_dir is not None:
        if wandb_dir.name.startswith("offline-"):
            lines.append(f"W&B (offline): {wandb_dir}")
            lines.append(f"  upload with: wandb sync {wandb_dir}")
        else:
            lines.append(f"W&B:           {wandb_dir} (online: see the run URL above)")
    lines.append(f"resume with:   python train.py --config {run_dir / 'config.yaml'} "
                 f"--ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}")
    return lines


@rank_zero_only
def print_run_summary(trainer: pl.Trainer, run_dir: Path) -> None:
    print("\n".join(["", *summary_lines(trainer, run_dir)]))
