"""What a finished training run prints: where its files are, how to look at them, what to do next."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from attnconv_pl.io.epoch_table import DYNAMICS_FILE
from attnconv_pl.io.wandb_run import sync_command
from attnconv_pl.models.external import is_import_path


def started_wandb_loggers(trainer: pl.Trainer) -> list[WandbLogger]:
    """The trainer's W&B loggers whose run was started."""
    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger) and logger._experiment is not None]


def wandb_run_dir(trainer: pl.Trainer) -> Optional[Path]:
    """The local folder of this launch's W&B run (``.../wandb/offline-run-*`` or ``run-*``), if any."""
    loggers = started_wandb_loggers(trainer)
    return Path(loggers[0].experiment.dir).parent if loggers else None


def probe_command(run_dir: Path, arch: Optional[str] = None) -> str:
    """The next step after training: ``probe.py`` on the run, its report in ``reports/<experiment>/<run_id>``;
    with ``--arch`` for a model built from an import path ``arch`` (probe.py imports only code
    named on its command line)."""
    command = f"python probe.py {run_dir} --out {Path('reports') / run_dir.parent.name / run_dir.name}"
    return f"{command} --arch {shlex.quote(arch)}" if arch and is_import_path(arch) else command


def summary_lines(trainer: pl.Trainer, run_dir: Path) -> list[str]:
    """Human-readable lines naming the run directory, checkpoints, metrics and the W&B run (with
    the ``wandb sync`` command of every offline launch of it), then the next steps."""
    lines = [f"run directory: {run_dir}"]
    checkpoints = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    if checkpoints:
        lines.append(f"checkpoints:   {run_dir / 'checkpoints'} ({', '.join(p.name for p in checkpoints)})")
    for label, name in (("dynamics:", DYNAMICS_FILE), ("metrics:", "metrics.csv")):
        if (run_dir / name).is_file():
            lines.append(f"{label:<15}{run_dir / name}")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if metrics:
        lines.append("final:         " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    wandb_dir = wandb_run_dir(trainer)
    if wandb_dir is not None:
        if wandb_dir.name.startswith("offline-"):
            run_id = started_wandb_loggers(trainer)[0].version
            lines.append(f"W&B (offline): {wandb_dir}")
            lines.append(f"  upload with: {sync_command(wandb_dir.parent, run_id)}")
        else:
            lines.append(f"W&B:           {wandb_dir} (online: see the run URL above)")
    lines.append(f"resume with:   python train.py --config {run_dir / 'config.yaml'} "
                 f"--ckpt_path {run_dir / 'checkpoints' / 'last.ckpt'}")
    arch = getattr(trainer.lightning_module, "hparams", {}).get("arch")
    lines.append(f"next, probe:   {probe_command(run_dir, arch if isinstance(arch, str) else None)}")
    return lines


@rank_zero_only
def print_run_summary(trainer: pl.Trainer, run_dir: Path) -> None:
    """Finish the W&B runs (so that W&B's own closing lines come first), then print
    :func:`summary_lines`."""
    lines = summary_lines(trainer, run_dir)
    for logger in started_wandb_loggers(trainer):
        logger.experiment.finish()
    print("\n".join(["", *lines]))
