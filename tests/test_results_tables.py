"""The verdict rule and the mean ± sd cells of docs/results.md (docs/results_tables.py)."""

import importlib.util
import math
import sys

import numpy as np
import pytest
from train_helpers import REPO

spec = importlib.util.spec_from_file_location("results_tables", REPO / "docs" / "results_tables.py")
results_tables = importlib.util.module_from_spec(spec)
sys.modules["results_tables"] = results_tables  # dataclasses look their module up there
spec.loader.exec_module(results_tables)


@pytest.mark.parametrize("differences, claimed_sign, expected", [
    ([-3.0, -2.0, -4.0], -1, "agree"),         # all below, mean 3 > 2 sd (2)
    ([-3.0, -2.0, -4.0], +1, "disagree"),
    ([-1.0, -0.1, -5.0], -1, "inconclusive"),  # all below but mean 2.03 < 2 sd (5.2)
    ([-3.0, 0.5, -4.0], -1, "inconclusive"),   # one seed the other way
    ([-3.0, math.nan, -4.0], -1, "inconclusive"),
])
def test_verdict_follows_the_paired_seed_rule(differences, claimed_sign, expected):
    assert results_tables.verdict(differences, claimed_sign) == expected


def test_spread_is_mean_and_sample_sd():
    values = [1.0, 2.0, 4.0]
    mean, sd = np.mean(values), np.std(values, ddof=1)
    assert results_tables.spread(values) == f"{mean:.1f} ± {sd:.1f}"
    assert results_tables.spread([0.5, math.nan, 0.7]).startswith("n/a (")


@pytest.mark.parametrize("differences, claimed_sign, expected", [
    ([2.0, 2.0, 2.05], +1, "agree"),             # sd tiny: margin far above 1
    ([1.0, 2.0, 3.0], +1, "fragile"),            # mean 2 = 2 sd exactly: margin 1.00
    ([1.0, 2.0, 3.1], +1, "fragile"),            # margin 0.99: within 5% below
    ([-1.0, -2.0, -3.0], +1, "fragile"),         # the disagree side is fragile too
    ([1.0, 2.0, 4.0], +1, "inconclusive"),       # margin 0.76
    ([1.2, 2.0, 2.8], +1, "agree"),              # margin 1.25
    ([-1.0, 2.0, 3.0], +1, "inconclusive"),      # mixed signs are never fragile
])
def test_verdict_within_five_percent_of_its_threshold_is_fragile(differences, claimed_sign, expected):
    assert results_tables.verdict(differences, claimed_sign) == expected


def test_margin_is_mean_over_two_sd():
    d = [1.0, 2.0, 4.0]
    assert results_tables.margin(d) == pytest.approx(abs(np.mean(d)) / (2 * np.std(d, ddof=1)))
    assert results_tables.margin([3.0, 3.0, 3.0]) == math.inf
    assert math.isnan(results_tables.margin([1.0, math.nan, 2.0]))


def test_shipped_data_rederive_every_table_of_results_md(capsys):
    assert results_tables.main(["--check"]) == 0, capsys.readouterr().err


def test_check_fails_naming_the_table_when_a_shipped_number_changes(tmp_path, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for path in results_tables.DATA_DIR.glob("*.csv"):
        (data_dir / path.name).write_text(path.read_text())
    path = data_dir / "attention_vs_conv_digits.csv"
    header, *rows = path.read_text().splitlines()
    index = next(i for i, row in enumerate(rows)
                 if row.split(",")[2:4] == ["mixer", "variance"] and row.split(",")[1] != "0")
    run, epoch, layer, metric, value = rows[index].split(",")
    rows[index] = ",".join([run, epoch, layer, metric, repr(float(value) * 1.5)])
    path.write_text("\n".join([header, *rows]) + "\n")
    assert results_tables.main(["--check", "--data_dir", str(data_dir)]) == 1
    assert "attention_vs_conv_digits: table after" in capsys.readouterr().err


def test_a_study_without_shipped_numbers_is_named_not_passed_silently(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert results_tables.main(["--studies", "stiffness_digits", "--data_dir", str(tmp_path / "data")]) == 0
    assert "no per-seed numbers" in capsys.readouterr().err


def test_data_written_from_runs_gives_the_same_tables(tmp_path):
    """Round trip: the numbers --write_data ships reproduce the tables computed from the runs."""
    runs_dir = tmp_path / "runs" / "vit_vs_resnet_digits"
    layers = ["blocks.0", "blocks.1", "norm"]
    rng = np.random.default_rng(0)
    for variant in ("vit_mini", "resnet18"):
        for seed in results_tables.SEEDS:
            run_dir = runs_dir / f"{variant}-seed{seed}"
            run_dir.mkdir(parents=True)
            rows = ["epoch,layer,metric,value"]
            for epoch in (0, 2):
                for layer in (layers if variant == "vit_mini" else ["layer1.0", "layer1.1", "avgpool"]):
                    for metric in ("variance", "id_twonn", *(f"next_{d}" for d in results_tables.DIAGRAM_DISTANCES)):
                        rows.append(f"{epoch},{layer},{metric},{rng.random()}")
            (run_dir / "dynamics.csv").write_text("\n".join(rows) + "\n")
            (run_dir / "metrics.csv").write_text(
                "epoch,train_loss,val_acc,epoch_seconds\n" + "".join(
                    f"{e},{2 - e * rng.random()},{rng.random()},1.5\n" for e in (1, 2)))
    study = results_tables.STUDIES["vit_vs_resnet_digits"]
    from_runs = results_tables.read_study("vit_vs_resnet_digits", study.variants, study.sweeps,
                                          tmp_path / "runs", tmp_path / "reports")
    tables = study.tables(from_runs)
    results_tables.write_data("vit_vs_resnet_digits", from_runs, tmp_path / "data")
    shipped = (tmp_path / "data" / "vit_vs_resnet_digits.csv").read_text()
    assert ",id_twonn," not in shipped and ",variance," in shipped  # only what the tables read
    from_data = results_tables.read_study_data("vit_vs_resnet_digits", study.variants, study.sweeps,
                                               tmp_path / "data")
    assert study.tables(from_data) == tables
