"""What the feature-dynamics callback costs: the default run with the callback on versus off.

    python bench/dynamics.py [--config configs/default.yaml] [--epochs 8] [-- extra train.py flags]

Trains the same run twice in this process (callback on, then off; W&B off in both), prints the
mean epoch time and total fit time of each and their ratio, the callback's time split by stage
(capture, snapshot file, probes, CSV/W&B), and each probe group timed on the run's last snapshot.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnconv_pl.cli import TrainCLI  # noqa: E402
from attnconv_pl.probe_runner import (compactness_metrics, diagrams_of, drift_metrics,  # noqa: E402
                                      stability_metrics)
from attnconv_pl.snapshots import load_snapshot, snapshot_path  # noqa: E402
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


def train(config: str, epochs: int, dynamics: bool, runs_dir: str, extra: list[str]):
    """Fit one run; returns (epoch seconds, fit seconds, the FeatureDynamics callback, run dir)."""
    cli = TrainCLI(["--config", config, "--trainer.max_epochs", str(epochs), "--runs_dir", runs_dir,
                    "--run_id", "on" if dynamics else "off", "--trainer.logger", "false",
                    "--trainer.enable_progress_bar", "false", "--dynamics.enabled", str(dynamics).lower(),
                    *extra])
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


def probe_group_seconds(callback: FeatureDynamics, run_dir: Path, last_epoch: int) -> dict[str, float]:
    """Each probe group of ``probe_runner`` timed on the last snapshot, summed over layers."""
    snapshot = load_snapshot(snapshot_path(run_dir, last_epoch))[0]
    initial = load_snapshot(snapshot_path(run_dir, 0))[0]
    settings = callback.settings
    totals = {"compactness (variance, PR, ID)": 0.0, "drift (displacement, W2)": 0.0,
              "stability (Lipschitz, W2)": 0.0, "persistence diagrams (in+out)": 0.0}
    for layer, sides in snapshot.items():
        output, layer_input = sides["output"], sides.get("input")
        totals["compactness (variance, PR, ID)"] += time_call(lambda: compactness_metrics(layer, output, settings))
        totals["drift (displacement, W2)"] += time_call(
            lambda: drift_metrics(layer, output, initial[layer]["output"], "init", settings))
        if layer_input is not None:
            totals["stability (Lipschitz, W2)"] += time_call(
                lambda: stability_metrics(layer, layer_input, output, settings))
            totals["persistence diagrams (in+out)"] += time_call(
                lambda: (diagrams_of(layer, output, settings), diagrams_of(layer, layer_input, settings)))
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as runs_dir:
        on_epochs, on_fit, callback, run_dir = train(args.config, args.epochs, True, runs_dir, args.extra)
        off_epochs, off_fit, _, _ = train(args.config, args.epochs, False, runs_dir, args.extra)
        groups = probe_group_seconds(callback, run_dir, args.epochs)
    print(f"\nconfig {args.config}, {args.epochs} epochs, {len(callback.layers)} layers, "
          f"{len(callback.probe_indices)} probe inputs")
    print(f"{'':28s}{'callback on':>14s}{'callback off':>14s}{'ratio':>8s}")
    on_epoch, off_epoch = statistics.median(on_epochs), statistics.median(off_epochs)
    print(f"{'median epoch (s)':28s}{on_epoch:14.2f}{off_epoch:14.2f}{on_epoch / off_epoch:8.2f}")
    print(f"{'whole fit (s)':28s}{on_fit:14.2f}{off_fit:14.2f}{on_fit / off_fit:8.2f}")
    print("\ncallback time per probe (s, median over probed epochs; epoch 0 included)")
    for stage in ("capture", "snapshot", "probes", "write_and_log"):
        values = [timing[stage] for timing in callback.timings]
        print(f"  {stage:26s}{statistics.median(values):8.3f}   (total {sum(values):.2f})")
    print(f"\nprobe groups on the epoch-{args.epochs} snapshot (s, all layers)")
    for name, seconds in groups.items():
        print(f"  {name:34s}{seconds:8.3f}")


if __name__ == "__main__":
    main()
