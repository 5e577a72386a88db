"""One W&B run per run directory: its id kept in the run directory, its epoch axis, its sync command.

The first launch of a run directory stores the W&B run id in ``<run_dir>/wandb_id``; every
resume (``--ckpt_path``) passes that id to the ``WandbLogger``, which resumes it
(``resume="allow"``, Lightning's default). Offline, each launch writes its own
``wandb/offline-run-<time>-<id>`` folder; ``wandb sync`` uploads them, in order of start time,
into the one run.
"""

from __future__ import annotations

import secrets
import shlex
import string
from pathlib import Path
from typing import Any, Optional

from attnconv_pl.io.atomic import atomic_write_text

WANDB_ID_FILE = "wandb_id"
"""File of a run directory holding its W&B run id (one line)."""

EPOCH_AXIS = "epoch"
"""The W&B step metric of every per-epoch number: completed training epochs (0 = initialisation)."""

PER_EPOCH_KEYS = ("train/*", "val/*")
"""Keys (W&B globs) of the epoch-level training and validation metrics, plotted against :data:`EPOCH_AXIS`."""

PER_STEP_KEYS = ("train/loss_step",)
"""Keys logged every few optimiser steps, plotted against Lightning's ``trainer/global_step``."""


def metric_key(layer: str, metric: str, prefix: str = "dynamics") -> str:
    """``<prefix>/<layer>/<metric>``, or ``<prefix>/<metric>`` for run-level numbers."""
    return f"{prefix}/{layer}/{metric}" if layer else f"{prefix}/{metric}"


def plot_against_epochs(run: Any, prefix: str) -> None:
    """Make the W&B ``run`` plot every ``<prefix>/*`` key against :data:`EPOCH_AXIS` (completed
    epochs), whatever step the trainer logs them at."""
    run.define_metric(EPOCH_AXIS)
    run.define_metric(f"{prefix}/*", step_metric=EPOCH_AXIS)


def stored_wandb_id(run_dir: Path) -> Optional[str]:
    """The W&B run id stored in ``run_dir``, None when the directory has none yet."""
    path = run_dir / WANDB_ID_FILE
    if not path.is_file():
        return None
    return path.read_text().strip() or None


def new_wandb_id(length: int = 8) -> str:
    """A random W&B run id: ``length`` lower-case letters and digits (W&B's own format)."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


def wandb_id_of_run(run_dir: Path, requested: Optional[str] = None) -> str:
    """The W&B run id of ``run_dir``: the stored one; else ``requested`` (a logger's ``id``
    option) or a new random id, which is stored (atomically) for the resumes to come."""
    stored = stored_wandb_id(run_dir)
    if stored is not None:
        return stored
    run_id = requested or new_wandb_id()
    atomic_write_text(run_dir / WANDB_ID_FILE, run_id + "\n")
    return run_id


def define_epoch_axis(run: Any) -> None:
    """Plot the epoch-level metrics of the W&B ``run`` against :data:`EPOCH_AXIS` (as the
    dynamics are) and the per-step loss against ``trainer/global_step``."""
    run.define_metric(EPOCH_AXIS)
    for key in PER_STEP_KEYS:
        run.define_metric(key, step_metric="trainer/global_step")
    for key in PER_EPOCH_KEYS:
        run.define_metric(key, step_metric=EPOCH_AXIS)


def offline_folders(wandb_dir: Path, run_id: str) -> list[Path]:
    """The offline folders of the W&B run ``run_id`` under ``wandb_dir``, oldest first."""
    return sorted(wandb_dir.glob(f"offline-run-*-{run_id}"))


def sync_command(wandb_dir: Path, run_id: str) -> str:
    """The ``wandb sync`` command that uploads every offline folder of run ``run_id`` (one
    folder named, or a glob matching all of them)."""
    folders = offline_folders(wandb_dir, run_id)
    if len(folders) == 1:
        return f"wandb sync {shlex.quote(str(folders[0]))}"
    return f"wandb sync {shlex.quote(str(wandb_dir))}/offline-run-*-{run_id}"
