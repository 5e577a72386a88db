"""``probe.py --wandb``: the numbers as W&B series, tables and line charts, into the training run
when the run directory names one; read back from the offline run files."""

import dataclasses
import json

import pytest
import wandb
from wandb_records import offline_run

from attnconv_pl.reports.wandb_report import WANDB_ID_FILE, log_report, training_wandb_run

CONFIG = """trainer:
  logger:
    class_path: lightning.pytorch.loggers.WandbLogger
    init_args: {project: my-project, entity: null}
"""


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def trained_run(make_run, tmp_path, label, wandb_id=None):
    """A probed run whose run directory has a ``config.yaml`` and, when given, a ``wandb_id``."""
    run_dir = tmp_path / "runs" / label
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(CONFIG)
    if wandb_id is not None:
        (run_dir / WANDB_ID_FILE).write_text(f"{wandb_id}\n")
    return dataclasses.replace(make_run(label, "attention_net"), description={"run_dir": str(run_dir)},
                               inputs={"variance": 0.25})


def report_folder(tmp_path):
    """A report folder with its page (the figures are not needed to log the numbers)."""
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.html").write_text("<p>report</p>")
    return out


def logged(out, runs):
    """``log_report`` of ``runs``, then the W&B service stopped so that every record is on disk."""
    folders = log_report(out, runs, [], name="probe/report")
    wandb.teardown()
    return folders


def read_table(folder, key):
    """``(columns, rows)`` of the table logged under ``key`` in the offline run ``folder``."""
    _, history, _ = offline_run(folder)
    (path,) = [row[f"{key}/path"] for row in history if f"{key}/path" in row]
    table = json.loads((folder / "files" / path).read_text())
    return table["columns"], table["data"]


def test_the_training_run_named_by_the_run_directory_is_resumed_and_gets_the_numbers(tmp_path, make_run):
    run = trained_run(make_run, tmp_path, "attn", wandb_id="trainrun01")
    assert training_wandb_run(run).project == "my-project"
    (folder,) = logged(report_folder(tmp_path), [run])
    assert folder.parent == tmp_path / "runs" / "attn" / "wandb" and folder.name.endswith("-trainrun01")
    run_id, history, summary = offline_run(folder)
    assert run_id == "trainrun01"
    series = [row for row in history if "probe/epoch" in row]
    assert [row["probe/epoch"] for row in series] == run.epochs
    for row in series:
        assert row["probe/mixer/variance"] == run.value(row["probe/epoch"], "mixer", "variance")
        assert row["probe/overhead_seconds"] == 0.5
    columns, rows = read_table(folder, "probe_report/dynamics")
    assert columns == ["epoch", "layer", "metric", "value"] and [tuple(r) for r in rows] == run.rows
    assert read_table(folder, "probe_report/probe_inputs")[1] == [["variance", 0.25]]
    columns, rows = read_table(folder, "probe_report/epochs/variance_table")  # x: epoch, one line per layer
    assert columns == ["step", "lineKey", "lineVal"]
    assert sorted(map(tuple, rows)) == sorted((epoch, layer, run.value(epoch, layer, "variance"))
                                              for epoch in run.epochs for layer in run.layers)
    _, rows = read_table(folder, "probe_report/depth/variance_table")  # x: layer index, one line per epoch
    assert sorted(map(tuple, rows)) == sorted(
        [(0, f"epoch {epoch}", 0.25) for epoch in run.epochs]
        + [(index, f"epoch {epoch}", run.value(epoch, layer, "variance")) for epoch in run.epochs
           for index, layer in enumerate(run.layers, start=1)])
    assert summary["final_accuracy"] == 0.5 and any(key.startswith("report") for row in history for key in row)


def test_runs_without_a_training_run_go_to_a_separate_probe_run(tmp_path, make_run):
    runs = [trained_run(make_run, tmp_path, "attn", wandb_id="trainrun02"), trained_run(make_run, tmp_path, "conv")]
    out = report_folder(tmp_path)
    training, probe = logged(out, runs)
    assert offline_run(training)[0] == "trainrun02" and probe.parent == out / "wandb"
    columns, rows = read_table(probe, "probe_report/conv/dynamics")
    assert [tuple(r) for r in rows] == runs[1].rows
    columns, rows = read_table(probe, "dynamics")
    assert columns[0] == "run" and {r[0] for r in rows} == {"attn", "conv"}


def test_each_training_run_gets_its_summary_under_the_keys_every_run_uses(tmp_path, make_run):
    """W&B's run table compares runs by summary key: no key names a run."""
    runs = [trained_run(make_run, tmp_path, "attn", wandb_id="trainrun03"),
            dataclasses.replace(trained_run(make_run, tmp_path, "conv", wandb_id="trainrun04"),
                                accuracy={2: 0.75})]
    *training, probe = logged(report_folder(tmp_path), runs)
    summaries = [offline_run(folder)[2] for folder in training]
    assert [summary["final_accuracy"] for summary in summaries] == [0.5, 0.75]
    assert not any("attn" in key or "conv" in key for summary in summaries for key in summary)
    assert not any("attn" in key or "conv" in key for key in offline_run(probe)[2])
    assert read_table(probe, "run_summaries") == (["run", "final_accuracy"], [["attn", 0.5], ["conv", 0.75]])
