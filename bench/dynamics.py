"""What the feature-dynamics callback costs: the default run with the callback off, on with its
probes in the background (the default) and on with its probes inline.

    python bench/dynamics.py [--config configs/default.yaml] [--epochs N] [--repeats 3] [-- train.py flags]

Trains the same run in each mode ``repeats`` times, modes interleaved, in this process (W&B off),
prints the median epoch time and the median whole fit time of each mode (the background run's
fit includes waiting for its last probes), their ratio to the run without the callback, the
callback's time per probe split by stage
(capture, snapshot file, probes, CSV, loggers; which of them training waits for), and each
probe group timed on the run's last snapshot. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runs import REPO, time_call, train  # noqa: E402

from attnconv_pl.analyses.dynamics.metrics import (  # noqa: E402
    compactness_metrics,
    diagram_distance_metrics,
    diagrams_of,
    drift_metrics,
    stability_metrics,
)
from attnconv_pl.capture.snapshots import load_snapshot, snapshot_path  # noqa: E402
from callbacks import FeatureDynamics  # noqa: E402


def probe_group_seconds(callback: FeatureDynamics, run_dir: Path, last_epoch: int) -> dict[str, float]:
    """Each probe group of ``attnconv_pl.analyses.dynamics`` timed on the last snapshot, summed over layers."""
    snapshot = load_snapshot(snapshot_path(run_dir, last_epoch))[0]
    initial = load_snapshot(snapshot_path(run_dir, 0))[0]
    settings = callback.settings
    totals = {"compactness (variance, PR, ID)": 0.0, "drift (displacement, W2)": 0.0,
              "stability (Lipschitz, W2)": 0.0, "persistence diagrams (in+out)": 0.0,
              "diagram distances (input vs output)": 0.0}
    for layer, sides in snapshot.items():
        output, layer_input = sides["output"], sides.get("input")
        totals["compactness (variance, PR, ID)"] += time_call(lambda: compactness_metrics(layer, output, settings))
        totals["drift (displacement, W2)"] += time_call(
            lambda: drift_metrics(layer, output, {"init": initial[layer]["output"]}, settings))
        if layer_input is not None:
            totals["stability (Lipschitz, W2)"] += time_call(
                lambda: stability_metrics(layer, layer_input, output, settings))
            totals["persistence diagrams (in+out)"] += time_call(
                lambda: (diagrams_of(layer, output, settings), diagrams_of(layer, layer_input, settings)))
            first, second = diagrams_of(layer, layer_input, settings), diagrams_of(layer, output, settings)
            totals["diagram distances (input vs output)"] += time_call(
                lambda: diagram_distance_metrics(layer, "stability", first, second, settings.max_dim))
    return totals


MODES = {"off": ("--dynamics.enabled", "false"), "background": ("--dynamics.background", "true"),
         "inline": ("--dynamics.background", "false")}
"""The runs compared: no callback, probes in the worker thread (default), probes inline."""

TRAINING_PATH = ("capture", "snapshot", "log")
"""Stages training waits for; ``probes`` and ``write`` run in the worker thread in background mode."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    parser.add_argument("--epochs", type=int, default=None, help="max_epochs (default: the config's)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (medians are reported)")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()
    runs = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as runs_dir:
        for repeat in range(args.repeats):
            for mode, flags in MODES.items():
                runs[mode].append(train(args.config, args.epochs, f"{mode}-{repeat}", runs_dir, [*flags, *args.extra]))
        callback, run_dir = runs["background"][0][2], runs["background"][0][3]
        groups = probe_group_seconds(callback, run_dir, callback.probed_epochs[-1])
    print(f"\nconfig {args.config}, {len(runs['off'][0][0])} epochs, {len(callback.layers)} layers, "
          f"{len(callback.probe_indices)} probe inputs, {len(callback.timings)} probes, "
          f"{args.repeats} runs per mode (medians)")
    print(f"{'':24s}" + "".join(f"{mode:>12s}" for mode in MODES))
    epochs = {mode: statistics.median(s for run in mode_runs for s in run[0]) for mode, mode_runs in runs.items()}
    fits = {mode: statistics.median(run[1] for run in mode_runs) for mode, mode_runs in runs.items()}
    print(f"{'median epoch (s)':24s}" + "".join(f"{epochs[mode]:12.2f}" for mode in MODES))
    print(f"{'whole fit (s)':24s}" + "".join(f"{fits[mode]:12.2f}" for mode in MODES))
    print(f"{'fit / fit off':24s}" + "".join(f"{fits[mode] / fits['off']:12.2f}" for mode in MODES))
    print(f"{'added to training':24s}" + "".join(f"{fits[mode] / fits['off'] - 1:12.0%}" for mode in MODES))
    for mode in ("background", "inline"):
        timings = [timing for run in runs[mode] for timing in run[2].timings]
        print(f"\n{mode}: callback time per probe (s, median over probed epochs; epoch 0 included)")
        for stage in ("capture", "snapshot", "probes", "write", "log"):
            values = [timing[stage] for timing in timings]
            where = "training waits" if stage in TRAINING_PATH or mode == "inline" else "worker thread"
            print(f"  {stage:12s}{statistics.median(values):8.3f}   (total {sum(values):5.2f}, {where})")
    print(f"\nprobe groups on the epoch-{callback.probed_epochs[-1]} snapshot (s, all layers)")
    for name, seconds in groups.items():
        print(f"  {name:40s}{seconds:8.3f}")


if __name__ == "__main__":
    main()
