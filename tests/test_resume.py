"""Resume reproduces the uninterrupted run exactly (CPU): metrics.csv and dynamics.csv number for
number, whatever point the run was killed at and whatever that kill left on disk."""

from __future__ import annotations

import csv
import shutil

import pytest
import torch
from train_helpers import EVERY_EPOCH, launch_train, run_train, train_here, train_output_here

pytestmark = pytest.mark.slow

SETTINGS = ("--seed_everything", "0", "--trainer.logger", "false", "--trainer.max_epochs", "4",
            "--dynamics.probe_size", "100", *EVERY_EPOCH)
KILL = ("--trainer.callbacks+=tests.kill_switch.KillAtEpochStart", "--trainer.callbacks.epoch")
NO_KILL = ("--trainer.callbacks=[]",)  # the killed run's config.yaml names the kill switch


def metrics(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in csv.DictReader(handle)]


def dynamics(run_dir) -> dict[tuple[str, str, str], str]:
    """Every number of dynamics.csv by (epoch, layer, metric), the cost columns aside; a
    duplicated key fails."""
    with open(run_dir / "dynamics.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if not r["metric"].endswith("_seconds")]
    keyed = {(r["epoch"], r["layer"], r["metric"]): r["value"] for r in rows}
    assert len(keyed) == len(rows), "duplicated rows"
    return keyed


def drop_rows(run_dir, epoch: int) -> None:
    """The state of a kill while ``epoch``'s probes were still computing: none of its rows."""
    with open(run_dir / "dynamics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    with open(run_dir / "dynamics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["epoch"]) != epoch)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train_here(tmp_path_factory.mktemp("runs"), "full", *SETTINGS)


def killed_at(runs, epoch: int, run_id: str = "part"):
    """A run killed when epoch ``epoch`` (0-based) starts: the checkpoints of ``epoch`` completed
    epochs are on disk, its probes may still have been computing."""
    result = run_train("--run_id", run_id, *SETTINGS, *KILL, str(epoch), runs_dir=runs)
    assert result.returncode == 3, (result.stdout + result.stderr)[-3000:]
    return runs / "default" / run_id


def resume(run_dir, checkpoint: str = "last.ckpt", *extra: str) -> str:
    """Resume ``run_dir`` from ``checkpoint`` in this process: what it printed and warned."""
    return train_output_here(run_dir.parent.parent, "--config", str(run_dir / "config.yaml"), "--ckpt_path",
                             str(run_dir / "checkpoints" / checkpoint), *NO_KILL, *extra)


def refused_resume(monkeypatch, capsys, run_dir, *extra: str) -> str:
    """The stderr of a resume of ``run_dir`` that train.py, run in this process, refuses with exit status 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        launch_train(monkeypatch, run_dir.parent.parent, "--config", str(run_dir / "config.yaml"), "--ckpt_path",
                     str(run_dir / "checkpoints" / "last.ckpt"), *NO_KILL, *extra)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err[-2000:]
    return err


def assert_same_as(run_dir, uninterrupted) -> None:
    assert metrics(run_dir) == metrics(uninterrupted)
    assert dynamics(run_dir) == dynamics(uninterrupted)


@pytest.fixture(scope="module")
def killed_at_2(tmp_path_factory):
    """A run killed when epoch 2 starts, to copy: each test resumes or damages its own copy."""
    return killed_at(tmp_path_factory.mktemp("killed"), 2)


def copy_of(run_dir, tmp_path, run_id: str):
    """A copy of ``run_dir`` under ``tmp_path``; a resume continues it in place (the run
    directory is the checkpoint's)."""
    copy = tmp_path / "default" / run_id
    shutil.copytree(run_dir, copy)
    return copy


def test_a_run_killed_after_an_epoch_resumes_to_the_same_numbers(uninterrupted, killed_at_2, tmp_path):
    run_dir = copy_of(killed_at_2, tmp_path, "part")
    drop_rows(run_dir, 2)  # deterministic: the kill came before epoch 2's probes finished
    output = resume(run_dir)
    assert "epoch 2 has no rows in dynamics.csv; probing its snapshot again" in output
    assert_same_as(run_dir, uninterrupted)


def test_an_epoch_checkpointed_before_its_snapshot_is_captured_again_from_its_weights(uninterrupted, killed_at_2,
                                                                                       tmp_path):
    """The on-disk state the old callback order could leave: the checkpoint of epoch 2 is
    written, it does not list epoch 2 as probed, and epoch 2 has neither snapshot nor rows."""
    run_dir = copy_of(killed_at_2, tmp_path, "part")
    drop_rows(run_dir, 2)
    (run_dir / "snapshots" / "epoch=002.safetensors").unlink()
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    state = next(s for key, s in checkpoint["callbacks"].items() if key.startswith("FeatureDynamics"))
    state["probed_epochs"] = [e for e in state["probed_epochs"] if e != 2]
    torch.save(checkpoint, last)
    output = resume(run_dir)
    assert "epoch 2 has no snapshot; capturing it again from the checkpoint" in output
    assert_same_as(run_dir, uninterrupted)


def test_an_unreadable_snapshot_of_the_resumed_epoch_is_captured_again_and_no_row_is_lost(
        uninterrupted, killed_at_2, tmp_path):
    """Epoch 2's snapshot truncated and its rows not written: captured again from the weights
    being resumed (the checkpoint of epoch 2), so epoch 2's rows and epoch 3's drift against it
    are all there; the damaged file is kept beside."""
    run_dir = copy_of(killed_at_2, tmp_path, "truncated")
    drop_rows(run_dir, 2)
    snapshot = run_dir / "snapshots" / "epoch=002.safetensors"
    damaged = snapshot.read_bytes()[:300]
    snapshot.write_bytes(damaged)
    output = resume(run_dir)
    assert_same_as(run_dir, uninterrupted)
    assert "dynamics: the snapshot of epoch 2 is unreadable (epoch=002.safetensors is not a readable safetensors " \
           "file" in output
    assert "it is kept as epoch=002.safetensors.unreadable; capturing it again from the checkpoint" in output
    assert (run_dir / "snapshots" / "epoch=002.safetensors.unreadable").read_bytes() == damaged


def test_unreadable_earlier_snapshots_are_captured_again_from_their_checkpoints(uninterrupted, killed_at_2, tmp_path):
    """Epoch 0's snapshot replaced by a folder and epoch 1's by epoch 0's file, both needed (drift
    against epoch 0, and epoch 2, without rows, drifts from epoch 1): each is captured again from
    its epoch=NNN.ckpt and every number is the uninterrupted run's."""
    run_dir = copy_of(killed_at_2, tmp_path, "earlier")
    drop_rows(run_dir, 2)
    snapshots = run_dir / "snapshots"
    (snapshots / "epoch=000.safetensors").replace(snapshots / "epoch=001.safetensors")
    (snapshots / "epoch=000.safetensors").mkdir()
    output = resume(run_dir)
    assert_same_as(run_dir, uninterrupted)
    for epoch, problem in ((0, "is a directory, not a snapshot file"), (1, "holds epoch 0, not epoch 1")):
        assert f"the snapshot of epoch {epoch} is unreadable (epoch={epoch:03d}.safetensors {problem}); it is kept " \
               f"as epoch={epoch:03d}.safetensors.unreadable; capturing it again from " \
               f"{run_dir / 'checkpoints' / f'epoch={epoch:03d}.ckpt'}" in output


def test_an_unreadable_snapshot_without_its_checkpoint_stops_the_resume_before_anything_changes(
        killed_at_2, tmp_path, monkeypatch, capsys):
    run_dir = copy_of(killed_at_2, tmp_path, "no_checkpoint")
    snapshot = run_dir / "snapshots" / "epoch=000.safetensors"
    snapshot.write_bytes(snapshot.read_bytes()[:1000])
    (run_dir / "checkpoints" / "epoch=000.ckpt").unlink()
    (run_dir / ".lock").unlink(missing_ok=True)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    err = refused_resume(monkeypatch, capsys, run_dir)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-2000:]
    assert errors[0].startswith("error: dynamics: the snapshot of epoch 0 is unreadable (epoch=000.safetensors is "
                                "not a readable safetensors file")
    assert f"{run_dir / 'checkpoints' / 'epoch=000.ckpt'}, to capture it again from, does not exist" in errors[0]
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before


def test_two_kills_and_two_resumes_give_the_same_numbers(uninterrupted, tmp_path):
    run_dir = killed_at(tmp_path, 1)
    check_ok_kill = run_train("--config", str(run_dir / "config.yaml"), "--ckpt_path",
                              str(run_dir / "checkpoints" / "last.ckpt"), *NO_KILL, *KILL, "3",
                              runs_dir=tmp_path)
    assert check_ok_kill.returncode == 3, (check_ok_kill.stdout + check_ok_kill.stderr)[-3000:]
    resume(run_dir)
    assert_same_as(run_dir, uninterrupted)


def test_resuming_an_earlier_checkpoint_drops_what_the_abandoned_continuation_wrote(uninterrupted, tmp_path):
    """Resumed from epoch=001.ckpt of a finished run, now probing every 2nd epoch: the rows of
    epoch 3, which the new continuation does not probe, are gone; training is unchanged."""
    run_dir = tmp_path / "default" / "again"
    shutil.copytree(uninterrupted, run_dir)
    resume(run_dir, "epoch=001.ckpt", "--dynamics.every_n_epochs", "2")
    assert metrics(run_dir) == metrics(uninterrupted)
    numbers = dynamics(run_dir)
    assert sorted({int(epoch) for epoch, _, _ in numbers}) == [0, 1, 2, 4]
    expected = dynamics(uninterrupted)
    assert {k: v for k, v in numbers.items() if int(k[0]) <= 2} == {k: v for k, v in expected.items() if int(k[0]) <= 2}


def test_a_resume_that_would_probe_other_layers_or_seeds_is_refused_before_anything_changes(killed_at_2, tmp_path,
                                                                                              monkeypatch, capsys):
    run_dir = copy_of(killed_at_2, tmp_path, "part")
    def files():  # the killed run's stale .lock is taken over and released: not a file of the run
        return {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file() and path.name != ".lock"}

    before = files()
    for flags, expected in (
            (("--dynamics.seed", "3"), "the run probed with seed 0, the config now says 3"),
            (("--dynamics.layers", "[mixer]"), "the run probed layers ['stem', 'mixer', 'norm', 'head']")):
        assert expected in refused_resume(monkeypatch, capsys, run_dir, *flags)
    assert files() == before


def test_a_resume_keeps_the_runs_probe_set_and_its_config_names_no_checkpoint(uninterrupted, killed_at_2, tmp_path):
    run_dir = copy_of(killed_at_2, tmp_path, "part")
    output = resume(run_dir, "last.ckpt", "--dynamics.probe_size", "30")
    assert "the run's probe set (100 inputs) is kept" in output
    assert_same_as(run_dir, uninterrupted)
    assert "ckpt_path: null" in (run_dir / "config.yaml").read_text()
