"""``train.py`` where a user meets it, run in this process: a swapped logger, bad input (one
``error:`` line, exit status 2, nothing of the launch left), the printed next step, a full disk."""

import errno
import importlib.util
import os
import re
import shlex
import sys
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from train_helpers import launch_train, refused

from attnconv_pl.cli import TrainCLI
from attnconv_pl.io.run_lock import acquire_run_lock
from attnconv_pl.models import create_model

README = Path(__file__).resolve().parents[1] / "README.md"

QUICK = ("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2",
         "--dynamics.enabled", "false", "--trainer.enable_progress_bar", "false")
"""One epoch of two batches, no probes: what a test of the command line needs of a training run."""

CSV_LOGGER = ("--trainer.logger", "lightning.pytorch.loggers.CSVLogger")


class TinyNet(nn.Module):
    """A 3x3 convolution and a linear head: a model given to train.py by its import path."""

    probe_layers = ["conv", "head"]

    def __init__(self, num_classes: int, in_chans: int, width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(images).relu().mean(dim=(2, 3)))


TINY_NET = f"{__name__}:TinyNet"



def files_under(folder: Path) -> dict[str, bytes | str]:
    """``{relative path: content, or a link's target}`` of every file and link under ``folder``."""
    return {path.relative_to(folder).as_posix(): os.readlink(path) if path.is_symlink() else path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file() or path.is_symlink()}


def readme_logger_commands() -> list[str]:
    commands = [line.split("#")[0].strip() for line in README.read_text().splitlines()
                if line.startswith("python train.py --trainer.logger ")]
    assert commands, "the README shows no logger example"
    return commands


@pytest.fixture(scope="module")
def import_path_run(tmp_path_factory):
    """A run of :class:`TinyNet` by import path, logged to W&B offline: (run directory, train.py's stdout)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    out = StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, redirect_stdout(out):
        launch_train(monkeypatch, runs_dir, "--model.init_args.arch", TINY_NET, "--model.init_args.arch_kwargs", "{}",
               *QUICK, "--checkpoint.every_n_epochs", "1")
    run_dir = runs_dir / "default" / "run"
    acquire_run_lock(run_dir).release()  # the lock this process holds: released as when train.py exits
    return run_dir, out.getvalue()


# ---------------------------------------------------------------- a swapped logger (README "Weights & Biases")
@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), ("--trainer.logger.save_dir", ".")], ids=["as-written", "save-dir-dot"])
def test_the_readme_logger_example_trains_into_the_run_directory(extra, tmp_path, monkeypatch):
    """The README's command, made short: it trains with no other flag, the logger's files are in
    the run directory (none in the working directory), and the config it saved reruns."""
    command, = readme_logger_commands()
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    launch_train(monkeypatch, tmp_path / "runs", *shlex.split(command)[2:], *extra, *QUICK)
    run_dir = tmp_path / "runs" / "default" / "run"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    logged = [path for path in run_dir.rglob("metrics.csv") if path.parent != run_dir]
    assert len(logged) == 1 and "val/acc" in logged[0].read_text(), sorted(run_dir.rglob("*"))
    assert not list(work.iterdir())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["trainer"]["logger"]["class_path"] == "lightning.pytorch.loggers.CSVLogger"
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "."
    monkeypatch.setattr(sys, "argv", ["train.py"])
    rerun = TrainCLI(args=["--config", str(run_dir / "config.yaml"), "--runs_dir", str(tmp_path / "again"),
                           "--run_id", "rerun", *QUICK])
    assert rerun.trainer.logger.save_dir == str(tmp_path / "again" / "config" / "rerun")
    rerun.discard_failed_launch()


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None,
    reason="TensorBoardLogger needs tensorboard or tensorboardX")
@pytest.mark.slow
def test_a_tensorboard_logger_writes_its_events_into_the_run_directory(tmp_path, monkeypatch):
    launch_train(monkeypatch, tmp_path / "runs", "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
                 *QUICK)
    assert list((tmp_path / "runs" / "default" / "run").rglob("events.out.tfevents.*"))


# ---------------------------------------------------------------- bad input: one line, nothing left
def test_an_unknown_timm_model_is_one_line_with_the_closest_names_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    line = refused(monkeypatch, capsys, tmp_path / "runs", "--model.init_args.arch", "timm:resnet1888")
    assert "timm has no model 'resnet1888'" in line and "Did you mean resnet18 " in line
    assert not (tmp_path / "runs").exists()


def test_changing_arch_alone_names_the_config_arch_kwargs_to_drop_and_the_flag_that_does(
        tmp_path, monkeypatch, capsys):
    """configs/default.yaml's ``arch_kwargs: {dim: 64}`` are attention_net's: the error names
    ``dim`` and gives the flag without it, which builds the model."""
    line = refused(monkeypatch, capsys, tmp_path / "runs", "--model.init_args.arch", "timm:resnet18")
    assert "model 'timm:resnet18' got unknown option(s) 'dim'" in line
    flag = re.search(r"--model\.init_args\.arch_kwargs '([^']*)'", line)
    assert flag and flag.group(1) == "{}", line
    create_model("timm:resnet18", num_classes=10, in_chans=1, img_size=16, **yaml.safe_load(flag.group(1)))
    assert not (tmp_path / "runs").exists()


def test_a_misspelt_arch_kwargs_key_names_the_closest_option_and_keeps_the_others(tmp_path, monkeypatch, capsys):
    line = refused(monkeypatch, capsys, tmp_path / "runs", "--model.init_args.arch_kwargs.num_head", "2")
    assert "'num_head' (did you mean 'num_heads'?)" in line
    assert "--model.init_args.arch_kwargs '{dim: 64}'" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_bad_input_found_in_training_leaves_no_run_directory_wandb_id_or_offline_wandb_run(
        tmp_path, monkeypatch, capsys):
    """The snapshot bound is checked at the first capture, after the W&B run started offline and
    config.yaml was written: the launch's folders go, the runs folder that was there stays."""
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    line = refused(monkeypatch, capsys, runs_dir, "--trainer.max_epochs", "1", "--dynamics.max_snapshot_bytes", "1")
    assert "snapshot" in line
    assert list(runs_dir.iterdir()) == []
    assert not list(tmp_path.rglob("wandb*")) and not list(tmp_path.rglob("offline-run-*"))


@pytest.mark.slow
def test_a_failing_resume_keeps_every_file_of_the_run_and_removes_only_what_it_added(
        import_path_run, monkeypatch, capsys):
    """Resuming with the stiffness analysis on, which needs residual blocks that TinyNet lacks,
    stops in the analysis's setup, after W&B started this launch's offline run (and pointed its
    links at it): the run directory is as it was, its one offline W&B run with it."""
    run_dir, _ = import_path_run
    before = files_under(run_dir)
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1 and (run_dir / "wandb_id").is_file()
    line = refused(monkeypatch, capsys, run_dir.parents[1], "--config", str(run_dir / "config.yaml"),
                   "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", "2",
                   "--stiffness.enabled", "true")
    assert "stiffness" in line
    assert files_under(run_dir) == before


# ---------------------------------------------------------------- what a finished run prints
@pytest.mark.slow
def test_the_next_step_printed_for_an_import_path_model_names_its_arch(import_path_run):
    run_dir, stdout = import_path_run
    next_step, = [line for line in stdout.splitlines() if line.startswith("next, probe:")]
    assert next_step.split()[2:] == ["python", "probe.py", str(run_dir), "--out", "reports/default/run",
                                     "--arch", TINY_NET]


# ---------------------------------------------------------------- a full disk
@pytest.mark.slow
def test_a_full_disk_at_a_checkpoint_is_one_line_naming_the_run_directory_and_the_space(
        tmp_path, monkeypatch, capsys):
    """The epoch-0 checkpoint is written; the disk fills at the next: one line names the run
    directory, a checkpoint's size and the resume command; no partial file is left."""
    from lightning.fabric.plugins.io import torch_io

    saves = []

    def save(checkpoint, path):  # Lightning's: the bytes in memory, then one write, which fills the disk
        saves.append(path)
        if len(saves) == 1:
            return write(checkpoint, path)
        Path(path).write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    write = torch_io._atomic_save
    monkeypatch.setattr(torch_io, "_atomic_save", save)
    line = refused(monkeypatch, capsys, tmp_path / "runs", *CSV_LOGGER, *QUICK)
    run_dir = tmp_path / "runs" / "default" / "run"
    first = run_dir / "checkpoints" / "epoch=000.ckpt"
    size = f"{first.stat().st_size / 2**20:.1f} MiB"
    assert line.startswith(f"error: no space left on device in {run_dir} (")
    assert f"a checkpoint of this run needs {size}" in line
    assert f"--ckpt_path {first}" in line
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch=000.ckpt"]


@pytest.mark.slow
def test_a_full_disk_at_a_snapshot_names_the_file_and_the_bytes_written_and_leaves_no_part(
        tmp_path, monkeypatch, capsys):
    """safetensors says it in its own error (``SafetensorError``), as in the issue."""
    from safetensors import SafetensorError

    from attnconv_pl.capture import snapshots

    def save_file(tensors, path, metadata=None):
        Path(path).write_bytes(b"\0" * 3 * 2**20)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(snapshots, "save_file", save_file)
    line = refused(monkeypatch, capsys, tmp_path / "runs", *CSV_LOGGER, *QUICK, "--dynamics.enabled", "true",
                   "--dynamics.topology", "false")
    snapshot_dir = tmp_path / "runs" / "default" / "run" / "snapshots"
    assert line.startswith(f"error: no space left on device for {snapshot_dir / 'epoch=000.safetensors'} "
                           f"(it needs more than the 3.0 MiB written; ")
    assert f"MiB free in {snapshot_dir})" in line
    assert not list(snapshot_dir.iterdir())
