"""What the benchmarks share: a timed training run of ``train.py``'s CLI in this process."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Optional

import lightning.pytorch as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnconv_pl.cli import TrainCLI  # noqa: E402
from callbacks import FeatureDynamics  # noqa: E402


class EpochTimer(pl.Callback):
    """Wall time of every training epoch, probing at its end included."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # registered last, so this runs after FeatureDynamics and EpochCheckpoint
        self.seconds.append(time.perf_counter() - self.started)


def train(config: str, epochs: Optional[int], run_id: str, runs_dir: str, extra: list[str]):
    """Fit one run of ``config`` (W&B and the progress bar off) with more ``train.py`` flags
    ``extra``; returns (epoch seconds, fit seconds, the FeatureDynamics callback, run dir)."""
    epochs_flags = [] if epochs is None else ["--trainer.max_epochs", str(epochs)]
    cli = TrainCLI(["--config", config, *epochs_flags, "--runs_dir", runs_dir, "--run_id", run_id,
                    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", *extra])
    timer = EpochTimer()
    cli.trainer.callbacks.append(timer)
    started = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    fit_seconds = time.perf_counter() - started
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, FeatureDynamics))
    return timer.seconds, fit_seconds, callback, cli.run_dir


def time_call(function, repeats: int = 3) -> float:
    """Median seconds of ``function()`` over ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)
