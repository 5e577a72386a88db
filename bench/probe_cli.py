"""What ``probe.py`` costs per checkpoint, and where the time goes.

    python bench/probe_cli.py [--run RUN_DIR] [--epochs 5] [-- extra train.py flags]

Trains the default digits run (``configs/default.yaml``, W&B off) unless ``--run`` names one,
then runs ``probe.py RUN --out <tmp>`` in this process and prints, per checkpoint, the seconds
spent loading the checkpoint, capturing the probe set (one forward pass with hooks) and
probing, their shares, and beside them a bare forward pass of the probe set (no hooks) and the
time of building the probe set and writing the report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import attnconv_pl.reports.report  # noqa: E402,F401 - imported before timing, as probe.py's lazy imports are
import probe  # noqa: E402
from attnconv_pl.offline.checkpoints import collect_runs  # noqa: E402
from attnconv_pl.offline.data_choice import DataChoice  # noqa: E402
from attnconv_pl.offline.prober import RunProber  # noqa: E402

STAGES = ("load", "references", "capture", "probes")


def train_default_run(runs_dir: Path, epochs: int, extra: list[str]) -> Path:
    """``python train.py`` with the default config into ``runs_dir``; returns the run directory."""
    subprocess.run([sys.executable, str(REPO / "train.py"), "--runs_dir", str(runs_dir), "--run_id", "bench",
                    "--trainer.max_epochs", str(epochs), "--trainer.logger", "false",
                    "--trainer.enable_progress_bar", "false", *extra], cwd=REPO, check=True, capture_output=True)
    return runs_dir / "default" / "bench"


def bare_forward_seconds(run_dir: Path, repeats: int = 3) -> float:
    """Median seconds of one forward pass of the run's probe set through its last checkpoint,
    without hooks, in the probe's batches: the floor a checkpoint's capture is compared with."""
    (run,) = collect_runs([run_dir])
    prober = RunProber.open(run, analyses={"dynamics": {}}, choice=DataChoice(), device=torch.device("cpu"))
    settings = prober.probe_settings
    images = prober.session.inputs(settings.probe_split, settings.probe_size, settings.seed).images
    batch = settings.batch_size
    network = prober.module.model.eval()
    seconds = []
    with torch.no_grad():
        for _ in range(repeats):
            started = time.perf_counter()
            for start in range(0, len(images), batch):
                network(images[start:start + batch])
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="probe this run directory instead of training one")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the trained run (default 5)")
    parser.add_argument("extra", nargs="*", help="extra train.py flags (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run or train_default_run(Path(tmp) / "runs", args.epochs, args.extra)
        out = Path(tmp) / "report"
        started = time.perf_counter()
        assert probe.main([str(run_dir), "--out", str(out), "--device", "cpu"]) == 0
        total = time.perf_counter() - started
        (summary,) = json.loads((out / "summary.json").read_text())["runs"]
        forward = bare_forward_seconds(run_dir)
    timings = summary["timings"]["checkpoints"]
    print(f"\nrun {run_dir} ({summary['model']['arch']}, {summary['dataset']['probe_inputs']} probe inputs, "
          f"{len(summary['layers'])} layers)\n")
    print(f"{'epoch':>5} {'total s':>8} " + " ".join(f"{stage:>14}" for stage in STAGES))
    for row in timings:
        seconds = sum(row[stage] for stage in STAGES)
        print(f"{row['epoch']:>5} {seconds:>8.3f} " + " ".join(
            f"{row[stage]:>7.3f} ({row[stage] / seconds:>3.0%})" for stage in STAGES))
    per_checkpoint = statistics.mean(sum(row[stage] for stage in STAGES) for row in timings)
    shares = {stage: sum(row[stage] for row in timings) / sum(sum(row[s] for s in STAGES) for row in timings)
              for stage in STAGES}
    capture = statistics.mean(row["capture"] for row in timings)
    probed = sum(sum(row[stage] for stage in STAGES) for row in timings)
    print(f"\nseconds per checkpoint: {per_checkpoint:.3f} (load {shares['load']:.0%}, references "
          f"{shares['references']:.0%}, capture {shares['capture']:.0%}, probes {shares['probes']:.0%})")
    print(f"capture {capture:.3f} s vs a bare forward pass of the probe set {forward:.3f} s "
          f"({capture / forward:.1f}x: hooks, projection, copies)")
    data = summary["timings"]["data_seconds"]
    print(f"probe set built once per run {data:.3f} s (the first checkpoint's load includes building the model)")
    print(f"report (figures, pages, tables) {total - probed - data:.1f} s; probe.py total {total:.1f} s")


if __name__ == "__main__":
    main()
