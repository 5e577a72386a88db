"""End-to-end: ``python train.py`` writes the run directory of DESIGN.md, resumes, runs DDP."""

import csv

import pytest
import torch

from attnconv_pl.checkpoints import build_module, read_checkpoint
from attnconv_pl.models.metric_attention import MetricAttention
from rank_parameters import rank_file
from train_helpers import EVERY_EPOCH, check_ok, run_train

pytestmark = pytest.mark.slow


def read_dynamics(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    output = check_ok(run_train("--run_id", "first", "--trainer.max_epochs", "2", *EVERY_EPOCH, runs_dir=runs))
    return runs / "default" / "first", output


def test_default_run_writes_the_run_directory(default_run):
    run_dir, output = default_run
    assert (run_dir / "config.yaml").is_file()
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert names == ["epoch=000.ckpt", "epoch=001.ckpt", "epoch=002.ckpt", "last.ckpt"]
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run"
    assert "wandb sync" in output and str(run_dir) in output
    assert f"metrics:       {run_dir / 'metrics.csv'}" in output
    rows = read_dynamics(run_dir / "dynamics.csv")
    assert sorted({int(r["epoch"]) for r in rows}) == [0, 1, 2]
    snapshots = sorted(p.name for p in (run_dir / "snapshots").iterdir())
    assert snapshots == ["epoch=000.safetensors", "epoch=001.safetensors", "epoch=002.safetensors"]


def test_numbered_checkpoints_hold_the_model_after_that_many_epochs(default_run):
    run_dir, _ = default_run
    init = torch.load(run_dir / "checkpoints" / "epoch=000.ckpt", map_location="cpu", weights_only=False)
    last = torch.load(run_dir / "checkpoints" / "epoch=002.ckpt", map_location="cpu", weights_only=False)
    assert init["global_step"] == 0
    assert last["global_step"] > 0 and last["epoch"] == 1  # Lightning's 0-based index of epoch 2
    changed = [k for k in init["state_dict"] if not torch.equal(init["state_dict"][k], last["state_dict"][k])]
    assert changed, "training did not change the weights"


def test_resume_continues_in_the_same_run_directory(default_run, tmp_path):
    run_dir, _ = default_run
    output = check_ok(run_train("--config", str(run_dir / "config.yaml"), "--trainer.max_epochs", "3",
                                "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"),
                                runs_dir=tmp_path / "elsewhere"))
    assert "Restoring states" in output or "Restored all states" in output
    assert (run_dir / "checkpoints" / "epoch=003.ckpt").is_file()
    assert not (tmp_path / "elsewhere").exists()
    resumed = torch.load(run_dir / "checkpoints" / "epoch=003.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epoch"] == 2
    rows = read_dynamics(run_dir / "dynamics.csv")
    keys = [(r["epoch"], r["layer"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "resume duplicated dynamics rows"
    assert sorted({int(r["epoch"]) for r in rows}) == [0, 1, 2, 3]


def test_bad_input_stops_with_a_clear_message(tmp_path):
    missing = run_train("--ckpt_path", str(tmp_path / "nope.ckpt"), runs_dir=tmp_path)
    assert missing.returncode != 0 and "does not exist" in missing.stderr + missing.stdout
    unknown_key = run_train("--trainer.max_epoch", "3", runs_dir=tmp_path)
    assert unknown_key.returncode != 0 and "max_epoch" in unknown_key.stderr
    wrong_type = run_train("--trainer.max_epochs", "three", runs_dir=tmp_path)
    assert wrong_type.returncode != 0 and "max_epochs" in wrong_type.stderr
    unknown_model = run_train("--model.init_args.arch", "resnet_9000", runs_dir=tmp_path)
    assert unknown_model.returncode != 0 and "resnet18" in unknown_model.stderr
    assert not list(tmp_path.rglob("*.ckpt"))


def test_metric_attention_vit_trains_under_ddp_on_cpu(tmp_path):
    """Two gloo processes train vit_mini with the shared-metric score on different shards; both
    finish, and every parameter of both replicas (the metric projections included) ends equal,
    and equal to the checkpoint, so each update was the same on both ranks."""
    check_ok(run_train("--config", "configs/metric_attention_digits.yaml", "--run_id", "ddp",
                       "--model.init_args.arch_kwargs.score", "shared_metric",
                       "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
                       "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3",
                       "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
                       "--dynamics.probe_size", "64", "--dynamics.topology", "false",
                       "--trainer.callbacks", "tests.rank_parameters.SaveRankParameters", runs_dir=tmp_path))
    run_dir = tmp_path / "metric_attention_digits" / "ddp"
    ranks = [torch.load(rank_file(run_dir, rank), weights_only=True) for rank in (0, 1)]
    assert not torch.equal(ranks[0]["first_batch"], ranks[1]["first_batch"]), "both ranks saw the same data"

    trained = build_module(read_checkpoint(run_dir / "checkpoints" / "epoch=001.ckpt"), run_dir)
    initial = build_module(read_checkpoint(run_dir / "checkpoints" / "epoch=000.ckpt"), run_dir)
    attentions = [block.attn for block in trained.model.blocks]
    assert attentions and all(isinstance(a, MetricAttention) and a.score == "shared_metric" for a in attentions)
    metric_names = [name for name, _ in trained.named_parameters() if ".attn.metric." in name]
    assert len(metric_names) == len(attentions)
    initial_parameters = dict(initial.named_parameters())
    for name, parameter in trained.named_parameters():
        assert torch.equal(ranks[0]["parameters"][name], ranks[1]["parameters"][name]), name
        assert torch.equal(ranks[0]["parameters"][name], parameter.detach()), name
    for name in metric_names:
        assert not torch.equal(initial_parameters[name], ranks[0]["parameters"][name]), f"{name} did not train"
