"""End-to-end: ``python train.py`` writes the run directory the README describes, resumes, runs DDP;
what it prints for a config or refuses, checked in this process."""

import csv
import shutil

import pytest
import torch
import yaml
from rank_parameters import rank_file
from train_helpers import EVERY_EPOCH, check_ok, launch_train, run_train, train_output_here

from attnconv_pl.models.metric_attention import MetricAttention
from attnconv_pl.offline.checkpoints import build_module, read_checkpoint

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


def test_the_run_directory_holds_only_what_the_readme_names(default_run):
    """No checkpoints of Lightning's own ModelCheckpoint, no logger folder, no lock left, no
    "`weights_only` was not set" lines, no absolute path to the run in config.yaml."""
    run_dir, output = default_run
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.ckpt")) == [
        f"checkpoints/{name}" for name in ("epoch=000.ckpt", "epoch=001.ckpt", "epoch=002.ckpt", "last.ckpt")]
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints", "config.yaml", "dynamics.csv", "metrics.csv", "snapshots", "wandb", "wandb_id"]
    assert "weights_only" not in output
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["trainer"]["default_root_dir"] is None
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "."  # the run directory, wherever it is
    assert str(run_dir) not in (run_dir / "config.yaml").read_text()


def test_a_moved_run_directory_resumes_in_its_new_place(default_run, tmp_path):
    run_dir, _ = default_run
    moved = tmp_path / "moved" / "default" / "first"
    shutil.copytree(run_dir, moved)
    original_wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    train_output_here(tmp_path / "elsewhere", "--config", str(moved / "config.yaml"), "--trainer.max_epochs", "3",
                      "--ckpt_path", str(moved / "checkpoints" / "last.ckpt"))
    assert sorted((run_dir / "wandb").glob("offline-run-*")) == original_wandb_runs
    assert len(list((moved / "wandb").glob("offline-run-*"))) == len(original_wandb_runs) + 1
    assert (moved / "checkpoints" / "epoch=003.ckpt").is_file()


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
    output = train_output_here(tmp_path / "elsewhere", "--config", str(run_dir / "config.yaml"),
                               "--trainer.max_epochs", "3", "--ckpt_path", str(run_dir / "checkpoints" / "last.ckpt"))
    assert "Restoring states" in output or "Restored all states" in output
    assert (run_dir / "checkpoints" / "epoch=003.ckpt").is_file()
    assert not (tmp_path / "elsewhere").exists()
    resumed = torch.load(run_dir / "checkpoints" / "epoch=003.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epoch"] == 2
    rows = read_dynamics(run_dir / "dynamics.csv")
    keys = [(r["epoch"], r["layer"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)), "resume duplicated dynamics rows"
    assert sorted({int(r["epoch"]) for r in rows}) == [0, 1, 2, 3]


def printed(monkeypatch, capsys, runs_dir, *args: str) -> str:
    """What ``train.py ARGS`` prints before it exits with status 0 (``--print_config``, a help),
    run in this process."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        launch_train(monkeypatch, runs_dir, *args)
    captured = capsys.readouterr()
    assert stop.value.code in (0, None), captured.err[-3000:]
    return captured.out


def test_an_arch_kwargs_key_keeps_the_others_and_a_whole_mapping_replaces_them_as_the_help_says(
        tmp_path, monkeypatch, capsys):
    def arch_kwargs(*args):
        config = yaml.safe_load(printed(monkeypatch, capsys, tmp_path, *args, "--print_config"))
        return config["model"]["init_args"]["arch_kwargs"]

    assert arch_kwargs() == {"dim": 64}  # configs/default.yaml
    assert arch_kwargs("--model.init_args.arch_kwargs.depth", "2") == {"dim": 64, "depth": 2}
    assert arch_kwargs("--model.init_args.arch_kwargs", "{depth: 2}") == {"depth": 2}
    help_text = " ".join(printed(monkeypatch, capsys, tmp_path, "--model.help", "ClassifierModule").split())
    assert ("``--model.init_args.arch_kwargs.KEY VALUE`` sets one key and keeps the config's others; "
            "``--model.init_args.arch_kwargs '{KEY: VALUE}'`` replaces the whole mapping.") in help_text


def bad_input(monkeypatch, capfd, *args: str, runs_dir) -> str:
    """The stderr of a train.py, run in this process, that must refuse its input: exit status 2,
    one ``error:`` message and no traceback or usage block, nothing trained."""
    capfd.readouterr()
    with pytest.raises(SystemExit) as stop:
        launch_train(monkeypatch, runs_dir, *args)
    captured = capfd.readouterr()
    assert stop.value.code == 2, (captured.out + captured.err)[-3000:]
    assert "Traceback" not in captured.err and "usage:" not in captured.err, captured.err[-3000:]
    assert captured.err.count("error:") == 1, captured.err[-3000:]
    return captured.err


@pytest.mark.parametrize(("args", "expected"), [
    (("--trainer.max_epoch", "3"), "max_epoch"),
    (("--trainer.max_epochs", "three"), "max_epochs"),
    (("--model.init_args.arch", "resnet_9000"), "resnet18"),
    (("--trainer.max_epochs", "-3"), "max_epochs must be >= 1"),
    (("--trainer.max_epochs", "0"), "max_epochs must be >= 1"),
    (("--ckpt_path", "nope.ckpt"), "does not exist"),
], ids=["unknown-key", "wrong-type", "unknown-model", "negative-epochs", "zero-epochs", "missing-checkpoint"])
def test_bad_input_stops_with_one_error_line(args, expected, tmp_path, monkeypatch, capfd):
    assert expected in bad_input(monkeypatch, capfd, *args, runs_dir=tmp_path)
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_runs_dir_that_is_a_file_is_refused(tmp_path, monkeypatch, capfd):
    (tmp_path / "file").write_text("not a folder")
    assert f"cannot be created: {tmp_path / 'file'} is a file" in bad_input(monkeypatch, capfd,
                                                                              runs_dir=tmp_path / "file")
    assert not list(tmp_path.rglob("wandb"))


def test_a_checkpoint_that_cannot_resume_this_config_is_refused_before_training(default_run, tmp_path, monkeypatch,
                                                                                   capfd):
    run_dir, _ = default_run
    last = run_dir / "checkpoints" / "epoch=001.ckpt"
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 100)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    runs = tmp_path / "runs"
    def bad_resume(*args):
        return bad_input(monkeypatch, capfd, "--ckpt_path", *args, runs_dir=runs)

    assert "not a PyTorch checkpoint" in bad_resume(str(garbage))
    assert "truncated or corrupted" in bad_resume(str(truncated))
    other_arch = bad_resume(str(last), "--model.init_args.arch", "conv_net")
    assert "holds a 'attention_net' model, but the config trains 'conv_net'" in other_arch
    other_width = bad_resume(str(last), "--model.init_args.arch_kwargs", "{dim: 32}")
    assert "do not fit the 'attention_net' model" in other_width and "has shape" in other_width
    assert not list(runs.rglob("*.ckpt"))


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
