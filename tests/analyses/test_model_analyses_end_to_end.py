"""End to end on digits: the single-node analysis on cct_2_3x1_16 and the stiffness analysis on
resnet20 with each channel attention, during training (``callbacks.ModelProbing``) and from the
checkpoints (``probe.py --analyses``): the same numbers both ways, next to the dynamics rows in
one ``dynamics.csv``, a resume that keeps them, DDP (rank zero writes, epoch 0 as in one
process), and one clear message for a model without what the analysis needs.

One stiffness run per channel attention is trained once per module (in this process) and read by
every test that needs it; the resume continues a copy of one. Training and probing run in this
process (``train.main``, ``probe.main``) but for DDP, a ``train.py`` subprocess, as a user would
run it."""

import csv
import json
import shutil

import numpy as np
import pytest
from train_helpers import check_ok, launch_train, read_numbers, refused, run_train

import probe
from attnconv_pl.io.run_lock import LOCK_NAME

pytestmark = pytest.mark.slow

SMALL_SINGLE_NODE = ("--single_node.enabled", "true", "--single_node.every_n_epochs", "1",
                     "--single_node.train_size", "300", "--single_node.eval_size", "120",
                     "--single_node.random_count", "2", "--single_node.max_iter", "30")
SMALL_STIFFNESS = ("--stiffness.enabled", "true", "--stiffness.every_n_epochs", "1", "--stiffness.probe_size", "60",
                   "--stiffness.jacobian_inputs", "1", "--stiffness.jacobian_max_iter", "30")
COMMON = ("--trainer.max_epochs", "1", "--trainer.logger", "false", "--checkpoint.every_n_epochs", "1",
          "--trainer.limit_train_batches", "4")
LIVE_SIMILARITY_AND_ATTACKS = ("--similarity.enabled", "true", "--robustness.enabled", "true",
                               "--robustness.size", "60", "--robustness.attacks", "[fgsm]",
                               "--robustness.eps_grid", "[0, 0.05]")
STIFFNESS_RUN = ("--model.init_args.arch", "resnet20", "--probing.probe_size", "60", "--dynamics.topology", "false",
                 "--dynamics.every_n_epochs", "1", *SMALL_STIFFNESS, *LIVE_SIMILARITY_AND_ATTACKS, *COMMON,
                 "--trainer.accelerator", "cpu")
"""resnet20 (its attention given as ``arch_kwargs``) with the dynamics, stiffness, similarity and
robustness (FGSM) analyses, probed at epochs 0 and 1."""
LIVE_ANALYSES = ("stiffness", "similarity", "robustness")


@pytest.fixture(scope="module")
def stiffness_run(tmp_path_factory):
    """The run directory of :data:`STIFFNESS_RUN` with ``attn`` (a function of it), trained in this
    process on first use."""
    runs = {}

    def run(attn):
        if attn not in runs:
            runs_dir = tmp_path_factory.mktemp(f"stiffness_{attn}")
            with pytest.MonkeyPatch.context() as patch:
                launch_train(patch, runs_dir, "--run_id", attn, "--model.init_args.arch_kwargs", f"{{attn: {attn}}}",
                             *STIFFNESS_RUN, run_id=attn)
            runs[attn] = runs_dir / "default" / attn
        return runs[attn]

    return run


def assert_same(probed, logged, metrics):
    """Every logged number of ``metrics`` (a predicate) reproduced, and nothing else."""
    logged = {key: value for key, value in logged.items() if metrics(key[2])}
    probed = {key: value for key, value in probed.items() if metrics(key[2])}
    assert logged and set(probed) == set(logged)
    for key, value in logged.items():
        assert probed[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key


def test_single_node_live_equals_offline_and_the_report_draws_it(monkeypatch, tmp_path):
    launch_train(monkeypatch, tmp_path, "--run_id", "cct", "--model.init_args.arch", "cct_2_3x1_16",
                 "--model.init_args.arch_kwargs", "{}", "--dynamics.enabled", "false", *SMALL_SINGLE_NODE, *COMMON,
                 run_id="cct")
    run = tmp_path / "default" / "cct"
    logged = read_numbers(run / "dynamics.csv")
    blocks = {layer for _, layer, _ in logged if layer}
    assert blocks == {"blocks.0.attn.nodes", "blocks.0.mlp.fc2", "blocks.1.attn.nodes", "blocks.1.mlp.fc2"}
    assert {epoch for epoch, _, _ in logged} == {0, 1}
    assert (1, "blocks.1.attn.nodes", "head_jaccard_random") in logged
    assert (1, "blocks.1.mlp.fc2", "head_jaccard") not in logged  # heads only for attention nodes
    assert 0 < logged[(1, "blocks.1.mlp.fc2", "snp_readout_acc")] <= 1

    out = tmp_path / "report"
    assert probe.main([str(run), "--out", str(out), "--analyses", "single_node", "--device", "cpu"]) == 0
    assert_same(read_numbers(out / "dynamics.csv", "default/cct"), logged,
                lambda metric: not metric.endswith("_seconds"))
    figures = {path.name for path in (out / "figures").iterdir()}
    assert {"single_node_depth.png", "single_node_andc.png", "single_node_cluster_sizes.png",
            "single_node_heads_default_cct.png", "depth_single_node_cct_2_3x1_16.png"} <= figures
    with np.load(out / "single_node_matrices.npz") as saved:
        matrices = saved["default/cct/epoch=001/blocks.1.attn.nodes/matrices"]
    assert matrices.shape == (4, 10, 10) and np.abs(matrices).max() == pytest.approx(1.0)
    assert "Single-node performance" in (out / "report.html").read_text()

    swept = tmp_path / "swept"
    assert probe.main([str(run / "checkpoints" / "epoch=001.ckpt"), "--out", str(swept), "--analyses", "single_node",
                       "--single_node.threshold", "0.9"]) == 0
    strict = read_numbers(swept / "dynamics.csv", "default/cct")
    key = (1, "blocks.1.mlp.fc2", "snp_cluster_size")
    assert strict[key] <= logged[key]  # a higher threshold keeps fewer labels per node


@pytest.mark.parametrize("attn", ["none", "se", "step"])
def test_stiffness_live_equals_offline_beside_the_dynamics(attn, stiffness_run, tmp_path):
    run = stiffness_run(attn)
    logged = read_numbers(run / "dynamics.csv")
    assert (0, "layer1.0", "variance") in logged and (1, "layer3.2", "stiffness_feature") in logged  # both analyses
    assert ((1, "layer2.0", "gate_rate_spearman") in logged) == (attn != "none")
    assert logged[(1, "layer2.0", "stiffness_feature")] >= logged[(1, "layer2.0", "stiffness_feature_q")] >= 1

    assert logged[(1, "layer3.2", "cka_prev")] <= 1 and (1, "", "fgsm_linf_accuracy_0.05") in logged

    out = tmp_path / "report"
    assert probe.main([str(run), "--out", str(out), "--analyses", *LIVE_ANALYSES, "--device", "cpu"]) == 0
    def live_metric(metric):  # every number of the analyses that ran live on the network (not cka_last:
        return (metric.startswith(("stiffness_", "jacobian_", "gate_", "rate_", "cka_", "noise_", "fgsm_"))
                and not metric.endswith("_seconds") and metric != "cka_last")  # probe.py adds it at the end

    assert_same(read_numbers(out / "dynamics.csv", f"default/{attn}"), logged, live_metric)
    figures = {path.name for path in (out / "figures").iterdir()}
    assert {"depth_stiffness_resnet20.png", "epochs_stiffness_feature_q.png"} <= figures
    assert (f"stiffness_gates_default_{attn}.png" in figures) == (attn != "none")
    summary = json.loads((out / "summary.json").read_text())["runs"][0]
    assert sorted(summary["analyses"]) == sorted(LIVE_ANALYSES)
    assert summary["analysis_settings"]["stiffness"]["jacobian_inputs"] == 1


def test_a_resume_keeps_the_rows_of_every_analysis(stiffness_run, monkeypatch, tmp_path):
    run = tmp_path / "default" / "none"
    shutil.copytree(stiffness_run("none"), run, ignore=shutil.ignore_patterns(LOCK_NAME))  # held by this process
    first = read_numbers(run / "dynamics.csv")
    launch_train(monkeypatch, tmp_path, "--config", str(run / "config.yaml"), "--trainer.max_epochs", "2",
                 "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), run_id="none")
    resumed = read_numbers(run / "dynamics.csv")
    with open(run / "dynamics.csv", newline="") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == len(resumed)  # no row written twice
    kept = {key: value for key, value in first.items() if not key[2].endswith("_seconds")}
    assert all(resumed[key] == pytest.approx(value, nan_ok=True) for key, value in kept.items())
    assert (2, "layer1.0", "variance") in resumed and (2, "layer1.0", "stiffness_feature") in resumed
    # the first probe after the resume compares with epochs 0 and 1 through their checkpoints, as probe.py does
    assert probe.main([str(run / "checkpoints" / "epoch=002.ckpt"), "--out", str(tmp_path / "alone"),
                       "--analyses", "similarity"]) == 0
    alone = read_numbers(tmp_path / "alone" / "dynamics.csv", "default/none")
    for metric in ("cka_first", "cka_prev"):
        assert resumed[(2, "layer3.2", metric)] == pytest.approx(alone[(2, "layer3.2", metric)], rel=1e-6), metric


def test_a_model_without_the_described_points_gets_one_clear_message(monkeypatch, capsys, tmp_path):
    line = refused(monkeypatch, capsys, tmp_path, "--run_id", "bad", "--trainer.max_epochs", "1",
                   "--trainer.logger", "false", "--dynamics.enabled", "false", "--stiffness.enabled", "true")
    assert "describes no residual block with its input and residual branch" in line


def test_under_ddp_rank_zero_writes_each_row_once_and_epoch_0_equals_one_process(stiffness_run, tmp_path):
    single = read_numbers(stiffness_run("se") / "dynamics.csv")
    check_ok(run_train("--run_id", "ddp", "--model.init_args.arch_kwargs", "{attn: se}", *STIFFNESS_RUN,
                       "--trainer.devices", "2", "--trainer.strategy", "ddp", runs_dir=tmp_path))
    with open(tmp_path / "default" / "ddp" / "dynamics.csv", newline="") as handle:
        keys = [(row["epoch"], row["layer"], row["metric"]) for row in csv.DictReader(handle)]
    assert len(keys) == len(set(keys)) and ("1", "layer3.2", "gate_rate_spearman") in keys
    ddp = read_numbers(tmp_path / "default" / "ddp" / "dynamics.csv")
    at_init = {key: value for key, value in single.items() if key[0] == 0 and not key[2].endswith("_seconds")}
    for key, value in at_init.items():
        assert ddp[key] == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), key
