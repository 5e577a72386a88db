"""Whether the feature-dynamics probes keep up with short (GPU-like) epochs: a ResNet-18 on 32 px
digits with 1000 probe inputs and its default layers, probed and with topology every epoch.

    python bench/probe_scale.py [--quick] [--repeats 3] [--epochs 4] [--train-batches 15] [-- train.py flags]

1. Training cost. The same short run (``limit_train_batches``: epochs about as long as one
   probe) is trained with the callback off, on with its probes in one process
   (``num_workers 1``) and on with the default pool of worker processes; the median epoch
   time, the whole fit (waiting for the last probes included), the fit's ratio to the run
   without the callback, the seconds training waited for the captures and that ratio without
   them (what the background probes alone cost; a GPU makes the capture milliseconds) are
   printed side by side.
2. Probe worker. The snapshots of one run are probed again (no training) in this process on
   one thread, and with 2 and (when the machine has more cores) all worker processes of one
   thread each; the median seconds per
   probed epoch after epoch 0 (which starts the processes), the speed-up over one process, and
   the largest relative difference of any number to the one-process number (0: all equal).

``--quick`` (200 probe inputs, 2 epochs of 3 batches, one repeat) checks that it runs; the
figures mean something only on an otherwise idle machine. A GPU is used when one is visible
(``accelerator: auto``).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _runs import REPO, train  # noqa: E402

from attnconv_pl.analyses.base import AnalysisResult  # noqa: E402
from attnconv_pl.analyses.dynamics import Dynamics  # noqa: E402
from attnconv_pl.analyses.probe_pool import ProbePool, available_cores, one_thread  # noqa: E402
from attnconv_pl.capture.snapshots import load_snapshot, snapshot_path  # noqa: E402
from callbacks import FeatureDynamics  # noqa: E402

RUN_FLAGS = ("--model.init_args.arch", "resnet18", "--model.init_args.arch_kwargs", "{}",
             "--data.init_args.image_size", "32",
             "--probing.probe_split", "train", "--dynamics.every_n_epochs", "1",
             "--dynamics.topology_every_n_epochs", "1", "--checkpoint.every_n_epochs", "1000")
"""ResNet-18 (CIFAR stem) on digits upsampled to 32 px, the probe set drawn from the train split,
probes and topology every epoch."""

MODES = {"off": ("--dynamics.enabled", "false"), "1 process": ("--dynamics.num_workers", "1"),
         "pool": ()}
"""The runs compared: no callback, probes in the training process, the default pool."""


def replay(run_dir: Path, callback: FeatureDynamics, epochs: list[int], workers: int):
    """Probe the run's snapshots again through a pool of ``workers`` (one: this process, on one
    thread); returns (seconds of each epoch after the first, results of every epoch)."""
    snapshots = [load_snapshot(snapshot_path(run_dir, epoch))[0] for epoch in epochs]
    dynamics = Dynamics(callback.settings, callback.layers, pool=ProbePool(workers))
    seconds, results = [], []
    with one_thread() if workers == 1 else contextlib.nullcontext():
        for epoch, snapshot in zip(epochs, snapshots):
            started = time.perf_counter()
            results.append(dynamics.run(epoch, snapshot, topology=True))
            seconds.append(time.perf_counter() - started)
    dynamics.close()
    return seconds[1:], results


def largest_difference(first: list[AnalysisResult], second: list[AnalysisResult]) -> float:
    """The largest relative difference |a - b| / |a| between the numbers of two replays (0 when
    every number is equal, NaN equal to NaN; infinite when the metrics or their order differ)."""
    differences = [0.0]
    for a, b in zip(first, second):
        if list(a.values) != list(b.values):
            return math.inf
        differences += [0.0 if x == y or (math.isnan(x) and math.isnan(y)) else abs(x - y) / max(abs(x), 1e-300)
                        for x, y in zip(a.values.values(), b.values.values())]
    return max(differences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 inputs, 2 epochs of 3 batches, 1 repeat")
    parser.add_argument("--probe-size", type=int, default=1000, help="probe inputs")
    parser.add_argument("--epochs", type=int, default=4, help="training epochs (each one probed)")
    parser.add_argument("--train-batches", type=int, default=15, help="limit_train_batches: the epoch's length")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (medians are reported)")
    parser.add_argument("extra", nargs="*", help="more train.py flags, after --")
    args = parser.parse_args()
    if args.quick:
        args.probe_size, args.epochs, args.train_batches, args.repeats = 200, 2, 3, 1
    flags = [*RUN_FLAGS, "--probing.probe_size", str(args.probe_size),
             "--trainer.limit_train_batches", str(args.train_batches), *args.extra]
    cores = available_cores()
    pool_sizes = sorted({1, 2, cores})
    runs = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as runs_dir:
        for repeat in range(args.repeats):
            for mode, mode_flags in MODES.items():
                run_id = f"{mode.replace(' ', '-')}-{repeat}"
                runs[mode].append(train(args.config, args.epochs, run_id, runs_dir, [*flags, *mode_flags]))
        callback, run_dir = runs["pool"][0][2], runs["pool"][0][3]
        epochs = sorted(callback.probed_epochs)
        replays = {workers: replay(run_dir, callback, epochs, workers) for workers in pool_sizes}

    print(f"\nresnet18, 32 px, {len(callback.layers)} layers, {len(callback.probe_indices)} probe inputs, "
          f"{args.epochs} epochs of {args.train_batches} batches, probes and topology every epoch, "
          f"{cores} cores, default pool {callback.pool.workers} processes, {args.repeats} runs per mode (medians)")
    print(f"\n1. training cost\n{'':28s}" + "".join(f"{mode:>12s}" for mode in MODES))
    epoch_seconds = {mode: statistics.median(seconds for run in mode_runs for seconds in run[0])
                     for mode, mode_runs in runs.items()}
    fits = {mode: statistics.median(run[1] for run in mode_runs) for mode, mode_runs in runs.items()}
    print(f"{'median epoch (s)':28s}" + "".join(f"{epoch_seconds[mode]:12.2f}" for mode in MODES))
    print(f"{'whole fit (s)':28s}" + "".join(f"{fits[mode]:12.2f}" for mode in MODES))
    print(f"{'added to training':28s}" + "".join(f"{fits[mode] / fits['off'] - 1:12.0%}" for mode in MODES))
    waits = {mode: statistics.median(sum(timing["capture"] + timing["snapshot"] for timing in run[2].timings)
                                     for run in mode_runs) for mode, mode_runs in runs.items() if mode != "off"}
    print(f"{'training waited for capture':28s}{'':12s}" + "".join(f"{waits[mode]:12.2f}" for mode in waits))
    print(f"{'added, capture excluded':28s}{'':12s}"
          + "".join(f"{(fits[mode] - waits[mode]) / fits['off'] - 1:12.0%}" for mode in waits))
    for mode in waits:
        probes = [timing["probes"] for run in runs[mode] for timing in run[2].timings if timing["epoch"] > 0]
        print(f"{mode}: probes took {statistics.median(probes):.2f} s per probed epoch in the background "
              f"(median), against a {epoch_seconds['off']:.2f} s epoch without the callback")
    print("The capture (a forward pass of the probe set and the projections) is what a GPU makes "
          "milliseconds; 'capture excluded' is the cost of the background probes alone.")
    serial_seconds = statistics.median(replays[1][0])
    print(f"\n2. probe worker alone, s per probed epoch (median over epochs 1-{epochs[-1]})")
    print(f"{'processes':>10s}{'s/epoch':>10s}{'speed-up':>10s}{'largest rel. difference to 1':>30s}")
    for workers, (seconds, results) in replays.items():
        print(f"{workers:>10d}{statistics.median(seconds):>10.2f}{serial_seconds / statistics.median(seconds):>10.2f}"
              f"{largest_difference(results, replays[1][1]):>30.1e}")


if __name__ == "__main__":
    main()
