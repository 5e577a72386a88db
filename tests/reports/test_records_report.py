"""Training records and robustness in the report: table, summary.json, figure and page."""

import dataclasses
import json

import numpy as np
import pytest

from attnconv_pl.analyses.robustness import noise_metric
from attnconv_pl.analyses.training_records import TrainingRecords
from attnconv_pl.reports.report import write_report, write_tables
from attnconv_pl.reports.robustness import noise_curves, robustness_figure
from attnconv_pl.reports.tables import records_table

LEVELS = (0.0, 0.5, 1.0)


def with_curves(run, curves, records=None):
    """``run`` with the artifacts of the training records analysis at its last epoch: metrics.csv
    rows ``curves`` and ``records``."""
    training = {"records": records, "curves": list(curves), "metrics_csv": f"runs/{run.label}/metrics.csv",
                "loss_floor": 0.0, "missing": None if records or curves else "no rows"}
    return dataclasses.replace(run, artifacts={**run.artifacts, "training_records": {run.last_epoch: training}})


def with_records(run, final_accuracy=(0.9, 0.6, 0.3), reached=3, training=True, robustness=True,
                 curves=()):
    """``run`` with training records (from metrics.csv rows ``curves``) at its last epoch and
    robustness numbers at its first and last epochs, as the analyses give them (values as rows,
    the rest as artifacts)."""
    records = TrainingRecords(epochs=4, target_loss=1.0, epochs_to_target_loss=reached,
                              seconds_to_target_loss=None if reached is None else 12.5, best_val_acc=0.875,
                              best_val_acc_epoch=4, final_val_acc=0.875, final_train_loss=0.7)
    if training:
        run = with_curves(run, curves, records)
    run = dataclasses.replace(run, description={**run.description, "model": {"num_classes": 10}})
    if not robustness:
        return run
    accuracy = {run.epochs[0]: (0.1, 0.1, 0.1), run.last_epoch: final_accuracy}
    inputs = {"dataset": "digits", "split": "val", "inputs": 270, "seed": 0}
    return dataclasses.replace(
        run, rows=run.rows + [(epoch, "", noise_metric(level), value) for epoch, values in accuracy.items()
                              for level, value in zip(LEVELS, values)],
        artifacts={**run.artifacts, "robustness": {epoch: {"noise_levels": list(LEVELS), "inputs": inputs}
                                                   for epoch in accuracy}})


def test_records_table_has_a_row_per_run_and_a_column_per_noise_level(make_run):
    runs = [with_records(make_run("attn/s0", "attention_net")),
            with_records(make_run("conv/s0", "conv_net"), reached=None), make_run("old/s0", "conv_net")]
    header, rows = records_table(runs)
    assert header == ["run", "model (group)", "best val acc (epoch)", "epochs to train loss ≤ 1", "seconds to it",
                      "final val acc", "acc σ=0", "acc σ=0.5", "acc σ=1"]
    assert rows[0] == ["attn/s0", "attention_net", "0.875 (4)", "3 of 4", "12.5", "0.875", "0.9", "0.6", "0.3"]
    assert rows[1][3:5] == ["not reached", "-"]
    assert rows[2] == ["old/s0", "conv_net", *["-"] * 7]


def test_summary_holds_the_records_and_the_accuracy_under_noise(tmp_path, make_run):
    runs = [with_records(make_run("attn/s0", "attention_net")), make_run("old/s0", "conv_net")]
    write_tables(tmp_path, runs, {})
    first, second = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert first["training"] == {
        "epochs": 4, "target_loss": 1.0, "epochs_to_target_loss": 3, "seconds_to_target_loss": 12.5,
        "best_val_acc": 0.875, "best_val_acc_epoch": 4, "final_val_acc": 0.875, "final_train_loss": 0.7,
        "metrics_csv": "runs/attn/s0/metrics.csv", "loss_floor": 0.0}
    assert first["robustness"] == {
        "noise_levels": [0.0, 0.5, 1.0], "dataset": "digits", "split": "val", "inputs": 270, "seed": 0,
        "accuracy": {"0": [0.1, 0.1, 0.1], "2": [0.9, 0.6, 0.3]}, "final_accuracy": [0.9, 0.6, 0.3]}
    assert second["training"] is None and second["robustness"] is None


def test_noise_curves_are_the_mean_and_sample_std_over_seeds(make_run):
    runs = [with_records(make_run("attn/s0", "attention_net"), (0.9, 0.6, 0.3)),
            with_records(make_run("attn/s1", "attention_net"), (0.8, 0.4, 0.2)),
            with_records(make_run("conv/s0", "conv_net"), (0.7, 0.5, 0.1)), make_run("old/s0", "conv_net")]
    attention, conv = noise_curves(runs)
    np.testing.assert_allclose(attention.noise_levels, LEVELS)
    np.testing.assert_allclose(attention.mean, [0.85, 0.5, 0.25])
    np.testing.assert_allclose(attention.std, np.std([[0.9, 0.6, 0.3], [0.8, 0.4, 0.2]], axis=0, ddof=1))
    assert (attention.runs, conv.runs) == (2, 1)  # the run without robustness is left out of its group
    np.testing.assert_allclose(conv.mean, [0.7, 0.5, 0.1])
    np.testing.assert_allclose(conv.std, 0.0)
    figure = robustness_figure(runs)
    plotted = [line.get_ydata() for line in figure.axes[0].get_lines() if line.get_label() != "chance"]
    assert any(np.allclose(y, [0.85, 0.5, 0.25]) for y in plotted)
    chance = [line for line in figure.axes[0].get_lines() if line.get_label() == "chance"]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(0.1)


def test_report_shows_the_records_table_first_and_the_robustness_figure_after_the_dynamics(tmp_path, make_run):
    runs = [with_records(make_run("attn/s0", "attention_net")), with_records(make_run("conv/s0", "conv_net"))]
    figures = write_report(tmp_path, runs, {"command": "python probe.py ... --robustness"})
    names = [figure.file_name for figure in figures]
    assert names[0] == "comparison.png" and names[-1] == "robustness.png"
    page = (tmp_path / "report.html").read_text()
    assert page.index('id="probed"') < page.index('id="records"') < page.index('id="comparison"') < page.index(
        'id="compactness"') < page.index('id="robustness"') < page.index('id="table"')
    assert "acc σ=0.5" in page and "0.875 (4)" in page
    markdown = (tmp_path / "report.md").read_text()
    assert "\n## Training records and robustness\n" in markdown and "figures/robustness.png" in markdown


def test_report_without_records_has_neither_table_nor_figure(tmp_path, make_run):
    figures = write_report(tmp_path, [make_run("a/s0", "attention_net")], {})
    assert "robustness.png" not in [figure.file_name for figure in figures]
    assert "Training records" not in (tmp_path / "report.html").read_text()


def test_wandb_run_summary_holds_a_runs_records_under_the_same_keys_in_every_run(make_run):
    from attnconv_pl.reports.wandb_report import run_summary_values

    attn = run_summary_values(with_records(make_run("attn/s0", "attention_net")))
    conv = run_summary_values(with_records(make_run("conv/s0", "conv_net"), reached=None))
    assert attn["best_val_acc"] == 0.875 and attn["epochs_to_target_loss"] == 3.0
    assert "epochs_to_target_loss" not in conv  # not reached: left out, not logged as 0
    assert [conv[f"noise_accuracy/sigma={level}"] for level in ("0", "0.5", "1")] == [0.9, 0.6, 0.3]
    assert set(attn) == set(conv) | {"epochs_to_target_loss"}  # no key names its run
    assert run_summary_values(make_run("old/s0", "conv_net")) == {"final_accuracy": 0.5}


def test_robustness_is_named_only_where_there_are_robustness_numbers(make_run):
    from attnconv_pl.reports.markdown import render_markdown
    from attnconv_pl.reports.report import build_document

    trained = with_records(make_run("a/s0", "attention_net"), robustness=False)
    noisy = with_records(make_run("a/s0", "attention_net"), training=False)
    pages = {name: render_markdown(build_document(runs, [], {})) for name, runs in
             (("trained", [trained]), ("noisy", [noisy]), ("both", [trained, noisy]))}
    assert "\n## Training records\n" in pages["trained"] and "robust" not in pages["trained"].lower()
    assert "noise" not in pages["trained"]
    assert "\n## Robustness\n" in pages["noisy"] and "acc σ=0.5" in pages["noisy"]
    assert "\n## Training records and robustness\n" in pages["both"]
