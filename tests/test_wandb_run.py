"""One W&B run per run directory, read back from the offline run files that train.py leaves:
its id across resumes, the whole config, the study group, the completed-epoch axis, the console."""

from __future__ import annotations

import csv
import glob
import json
import shlex
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from train_helpers import check_ok, run_train, train_output_here
from wandb.proto import wandb_internal_pb2

from attnconv_pl.io.console import silence_known_noise
from attnconv_pl.io.wandb_run import WANDB_ID_FILE, stored_wandb_id, sync_command, wandb_id_of_run

TINY = ("--dynamics.enabled", "false", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
        "--trainer.log_every_n_steps", "1")
"""A run of a few batches per epoch, a training-loss row at every step."""

BLOCK = 32768
"""Block size of the log format of ``.wandb`` files (LevelDB's): records never straddle a block header."""


def wandb_records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    """The records of a ``.wandb`` file: a 7-byte file header (``:W&B``, magic, version), then
    LevelDB log records (checksum u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if BLOCK - position % BLOCK < 7:  # a block's tail too short for a header is padding
            position += BLOCK - position % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:
            break
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@dataclass
class OfflineRun:
    """What one offline launch recorded: run id, group, job type, config and history rows."""

    run_id: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def read_offline_run(folder: Path) -> OfflineRun:
    (path,) = folder.glob("run-*.wandb")
    run = OfflineRun()
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.group, run.job_type = record.run.run_id, record.run.run_group, record.run.job_type
        elif kind == "config":
            run.config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            run.history.append({key: value for key, value in row.items() if not key.startswith("_")})
    return run


def offline_runs(run_dir: Path) -> list[OfflineRun]:
    return [read_offline_run(folder) for folder in sorted((run_dir / "wandb").glob("offline-run-*"))]


def printed(output: str, label: str) -> str:
    """The text after ``label`` on the summary line that starts with it."""
    (line,) = [line.strip() for line in output.splitlines() if line.strip().startswith(label)]
    return line[len(label):].strip()


@pytest.fixture(scope="module")
def resumed_twice(tmp_path_factory):
    """A study-like run trained one epoch, then resumed to two and to three: (run dir, outputs)."""
    runs = tmp_path_factory.mktemp("runs")
    study = ("--wandb_group", "study", "--wandb_job_type", "variant", *TINY)
    outputs = [check_ok(run_train("--run_id", "r", "--trainer.max_epochs", "1", *study, runs_dir=runs))]
    run_dir = runs / "default" / "r"
    for epochs in ("2", "3"):
        outputs.append(check_ok(run_train("--config", str(run_dir / "config.yaml"), "--ckpt_path",
                                          str(run_dir / "checkpoints" / "last.ckpt"), "--trainer.max_epochs", epochs,
                                          *TINY, runs_dir=runs)))
    return run_dir, outputs


@pytest.mark.slow
def test_two_resumes_log_to_the_one_wandb_run_of_the_run_directory(resumed_twice):
    run_dir, outputs = resumed_twice
    launches = offline_runs(run_dir)
    assert len(launches) == 3
    assert {launch.run_id for launch in launches} == {(run_dir / WANDB_ID_FILE).read_text().strip()}
    command = shlex.split(printed(outputs[-1], "upload with:"))
    assert command[:2] == ["wandb", "sync"]
    synced = sorted(path for pattern in command[2:] for path in glob.glob(pattern))
    assert synced == sorted(str(path) for path in (run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_the_wandb_config_is_the_whole_resolved_config(resumed_twice):
    run_dir, _ = resumed_twice
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    config = offline_runs(run_dir)[-1].config
    for section in ("seed_everything", "trainer", "model", "data", "dynamics", "single_node", "stiffness",
                    "checkpoint", "wandb_group", "wandb_job_type"):
        assert config[section] == saved[section], section
    assert config["trainer"]["max_epochs"] == 3 and config["model"]["init_args"]["arch_kwargs"] == {"dim": 64}
    # one config: no flattened copy of the model's hyper-parameters (arch, lr, _instantiator, ...) beside it
    assert set(config) - {"_wandb"} == set(saved)


@pytest.mark.slow
def test_study_runs_are_grouped_and_their_config_yaml_starts_a_new_wandb_run(resumed_twice):
    run_dir, _ = resumed_twice
    assert {(launch.group, launch.job_type) for launch in offline_runs(run_dir)} == {("study", "variant")}
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    logger_args = saved["trainer"]["logger"]["init_args"]
    assert logger_args["id"] is None and logger_args["name"] is None
    assert "group" not in logger_args and "job_type" not in logger_args
    assert (saved["wandb_group"], saved["wandb_job_type"]) == ("study", "variant")


@pytest.mark.slow
def test_epoch_metrics_are_logged_on_the_completed_epoch_axis_of_metrics_csv(resumed_twice):
    """Every epoch-level W&B row carries ``epoch`` = completed epochs, and its numbers are those
    of the metrics.csv row of that epoch; the per-step rows carry the epochs completed before."""
    run_dir, _ = resumed_twice
    rows = [row for launch in offline_runs(run_dir) for row in launch.history]
    with open(run_dir / "metrics.csv", newline="") as handle:
        by_epoch = {int(row["epoch"]): row for row in csv.DictReader(handle)}
    assert sorted(by_epoch) == [1, 2, 3]
    for key, column in (("train/loss", "train_loss"), ("train/acc", "train_acc"), ("val/loss", "val_loss"),
                        ("val/acc", "val_acc"), ("val/acc_top5", "val_acc_top5")):
        logged = {row["epoch"]: row[key] for row in rows if key in row}
        assert sorted(logged) == [1, 2, 3], key
        assert logged == pytest.approx({epoch: float(row[column]) for epoch, row in by_epoch.items()}), key
    steps = [row for row in rows if "train/loss_step" in row]
    assert [row["epoch"] for row in steps] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert not [key for row in rows for key in row if key.endswith("_epoch")]


@pytest.mark.slow
def test_the_console_names_the_next_step_without_lightnings_noise(resumed_twice):
    run_dir, outputs = resumed_twice
    for output in outputs:
        assert printed(output, "next, probe:") == f"python probe.py {run_dir} --out reports/default/r"
        assert "💡 Tip" not in output and "litlogger" not in output and "LeafSpec" not in output


@pytest.mark.slow
def test_wandb_options_without_a_wandb_logger_are_ignored_with_one_line(tmp_path):
    output = train_output_here(tmp_path, "--run_id", "csv", "--trainer.logger", "false", "--trainer.max_epochs", "1",
                               "--wandb_group", "study", *TINY)
    assert output.count("--wandb_group and --wandb_job_type are ignored: the run logs to no WandbLogger") == 1
    run_dir = tmp_path / "default" / "csv"
    assert (run_dir / "metrics.csv").is_file()
    assert not (run_dir / "wandb").exists() and not (run_dir / WANDB_ID_FILE).exists()


def test_the_wandb_id_of_a_run_directory_is_stored_once_and_kept(tmp_path):
    assert stored_wandb_id(tmp_path) is None
    first = wandb_id_of_run(tmp_path)
    assert len(first) == 8 and first.isalnum() and first == first.lower()
    assert (tmp_path / WANDB_ID_FILE).read_text() == first + "\n"
    assert wandb_id_of_run(tmp_path) == first
    assert wandb_id_of_run(tmp_path, "mine") == first  # the stored id wins: the directory has one W&B run
    other = tmp_path / "other"
    assert wandb_id_of_run(other, "mine") == "mine" == stored_wandb_id(other)


def test_the_sync_command_names_one_folder_or_every_launch(tmp_path):
    wandb_dir = tmp_path / "my runs" / "wandb"
    first = wandb_dir / "offline-run-20260101_000000-abc"
    first.mkdir(parents=True)
    (wandb_dir / "offline-run-20260101_000000-xyz").mkdir()  # another W&B run: not synced with this one
    assert shlex.split(sync_command(wandb_dir, "abc")) == ["wandb", "sync", str(first)]
    second = wandb_dir / "offline-run-20260102_000000-abc"
    second.mkdir()
    (_, _, pattern) = shlex.split(sync_command(wandb_dir, "abc"))
    assert sorted(glob.glob(pattern)) == [str(first), str(second)]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_only_the_known_noise_is_silenced(num_workers):
    advice = ("The 'train_dataloader' does not have many workers which may be a bottleneck. Consider increasing "
              "the value of the `num_workers` argument` to `num_workers=7` in the `DataLoader` to improve performance.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_noise(num_workers)
        warnings.warn(advice, PossibleUserWarning, stacklevel=2)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ... instead.", FutureWarning, stacklevel=2)
        warnings.warn("The number of training batches (3) is smaller than the logging interval", PossibleUserWarning,
                      stacklevel=2)
    messages = [str(warning.message) for warning in caught]
    assert messages == ([] if num_workers == 0 else [advice]) + [
        "The number of training batches (3) is smaller than the logging interval"]
