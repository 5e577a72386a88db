"""``attnconv_pl.io.launch_record``: what a launch that stopped on bad input removes, and what it never touches."""

import os

from attnconv_pl.io.launch_record import LaunchRecord


def test_a_new_run_directory_goes_with_the_empty_folders_above_it_that_the_launch_created(tmp_path):
    run_dir = tmp_path / "runs" / "exp" / "a"
    record = LaunchRecord.before_launch(run_dir)
    (run_dir / "wandb" / "offline-run-1-x").mkdir(parents=True)
    (run_dir / "wandb_id").write_text("x\n")
    record.discard()
    assert list(tmp_path.iterdir()) == []


def test_another_launchs_run_directory_in_a_folder_this_launch_created_stays(tmp_path):
    run_dir = tmp_path / "runs" / "exp" / "a"
    record = LaunchRecord.before_launch(run_dir)
    run_dir.mkdir(parents=True)
    other = tmp_path / "runs" / "exp" / "b"
    other.mkdir()
    (other / "config.yaml").write_text("seed_everything: 1\n")
    record.discard()
    assert not run_dir.exists()
    assert (other / "config.yaml").read_text() == "seed_everything: 1\n"


def test_a_resumed_run_directory_loses_only_what_the_launch_added(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"epochs")
    (run_dir / "config.yaml").write_text("old\n")
    (run_dir / "wandb" / "offline-run-1-x").mkdir(parents=True)
    os.symlink("offline-run-1-x", run_dir / "wandb" / "latest-run")
    record = LaunchRecord.before_launch(run_dir)

    (run_dir / "wandb" / "offline-run-2-x" / "logs").mkdir(parents=True)
    (run_dir / "wandb" / "latest-run").unlink()
    os.symlink("offline-run-2-x", run_dir / "wandb" / "latest-run")
    (run_dir / "config.yaml").write_text("new\n")
    record.discard()
    assert sorted(path.relative_to(run_dir).as_posix() for path in run_dir.rglob("*")) == [
        "checkpoints", "checkpoints/last.ckpt", "config.yaml", "wandb", "wandb/latest-run", "wandb/offline-run-1-x"]
    assert os.readlink(run_dir / "wandb" / "latest-run") == "offline-run-1-x"
    assert (run_dir / "config.yaml").read_text() == "old\n"


def test_a_launch_that_wrote_a_checkpoint_keeps_everything(tmp_path):
    run_dir = tmp_path / "runs" / "a"
    record = LaunchRecord.before_launch(run_dir)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "epoch=000.ckpt").write_bytes(b"epoch 0")
    (run_dir / "wandb_id").write_text("x\n")
    record.discard()
    assert sorted(path.name for path in run_dir.rglob("*")) == ["checkpoints", "epoch=000.ckpt", "wandb_id"]
