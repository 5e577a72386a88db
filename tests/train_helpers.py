"""Run ``train.py`` and ``probe.py`` as a user would: subprocesses from the repository root, or
their ``main`` in this process where the subprocess is not the point (no interpreter to start)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

EVERY_EPOCH = ("--dynamics.every_n_epochs", "1", "--dynamics.topology_every_n_epochs", "1",
               "--checkpoint.every_n_epochs", "1")
"""Flags that probe and checkpoint every epoch (the default config does every third)."""


def run_train(*args: str, runs_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python train.py --runs_dir RUNS_DIR ARGS...`` with W&B offline; output captured."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1",
           "OMP_NUM_THREADS": "1"}
    env.pop("ATTNCONV_RUN_ID", None)
    return subprocess.run([sys.executable, str(REPO / "train.py"), "--runs_dir", str(runs_dir), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def run_probe(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python probe.py ARGS...`` from the repository root, W&B offline; output captured."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(REPO / "probe.py"), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def probe_status(args) -> int:
    """The exit status of ``probe.main(ARGS)`` run in this process (argparse's included), on one
    thread as :func:`run_probe`'s child computes."""
    import probe
    from attnconv_pl.analyses.probe_pool import one_thread

    try:
        with one_thread():
            return probe.main([str(arg) for arg in args])
    except SystemExit as stop:
        return stop.code


def probe_here(*args) -> subprocess.CompletedProcess:
    """``probe.main(ARGS)`` in this process, answered as :func:`run_probe` answers: the exit
    status and the output, captured."""
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = probe_status(args)
    return subprocess.CompletedProcess(["probe.py", *map(str, args)], status, out.getvalue(), err.getvalue())


def read_numbers(path: Path, run: str | None = None) -> dict[tuple[int, str, str], float]:
    """``{(epoch, layer, metric): value}`` of a dynamics CSV (of one ``run`` when it has that column)."""
    with open(path, newline="") as handle:
        return {(int(r["epoch"]), r["layer"], r["metric"]): float(r["value"]) for r in csv.DictReader(handle)
                if run is None or r["run"] == run}


def check_ok(result: subprocess.CompletedProcess) -> str:
    """The combined output of a run that must have succeeded (assertion message: its tail)."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def launch_train(monkeypatch, runs_dir: Path, *args: str, run_id: str = "run") -> None:
    """``python train.py --runs_dir RUNS_DIR ARGS...`` in this process, as run ``run_id`` (W&B offline)."""
    import train
    from attnconv_pl.cli import RUN_ID_ENV

    monkeypatch.setattr(sys, "argv", ["train.py"])
    monkeypatch.setenv(RUN_ID_ENV, run_id)
    monkeypatch.setenv("WANDB_MODE", "offline")
    train.main(["--runs_dir", str(runs_dir), *args])


def refused(monkeypatch, capsys, runs_dir: Path, *args: str) -> str:
    """The one ``error:`` line of an in-process launch that must stop on bad input with exit status 2
    (no traceback, no jsonargparse Union dump)."""
    import pytest

    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        launch_train(monkeypatch, runs_dir, *args)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "Union" not in err and "Given value" not in err, err
    return lines[0]


def train_here(runs_dir: Path, run_id: str, *args: str, experiment: str = "default") -> Path:
    """``train.py --runs_dir RUNS_DIR ARGS...`` in this process as run ``run_id``, on one thread as
    :func:`run_train`'s child computes, for fixtures of any scope; its run directory, whose lock is
    released as when train.py exits."""
    import pytest

    from attnconv_pl.analyses.probe_pool import one_thread
    from attnconv_pl.io.run_lock import acquire_run_lock

    with pytest.MonkeyPatch.context() as monkeypatch, redirect_stdout(StringIO()), one_thread():
        launch_train(monkeypatch, runs_dir, *args, run_id=run_id)
    run_dir = runs_dir / experiment / run_id
    acquire_run_lock(run_dir).release()
    return run_dir


def train_output_here(runs_dir: Path, *args: str) -> str:
    """``train.py --runs_dir RUNS_DIR ARGS...`` in this process (W&B offline, one thread), which must
    succeed: what it printed, logged (Lightning's messages) and warned (the training's and its
    probe thread's), as :func:`run_train`'s output holds them; the run directory's lock is
    released as when train.py exits."""
    import logging
    import warnings

    import pytest

    from attnconv_pl.analyses.probe_pool import one_thread
    from attnconv_pl.io.run_lock import acquire_run_lock

    out = StringIO()
    handler, lightning_log = logging.StreamHandler(out), logging.getLogger("lightning.pytorch")
    lightning_log.addHandler(handler)
    try:
        with pytest.MonkeyPatch.context() as monkeypatch, redirect_stdout(out), redirect_stderr(out), one_thread(), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                launch_train(monkeypatch, runs_dir, *args)
            except SystemExit as stop:
                raise AssertionError(f"train.py exited with {stop.code}: {out.getvalue()[-3000:]}") from None
    finally:
        lightning_log.removeHandler(handler)
    run_dirs = {path.parent for path in runs_dir.rglob("config.yaml")}
    for run_dir in run_dirs:
        acquire_run_lock(run_dir).release()
    return out.getvalue() + "\n".join(str(warning.message) for warning in caught)
