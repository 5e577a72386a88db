"""``attnconv_pl.io.run_lock``: one writer per run directory, checked with real processes."""

import json
import os
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from attnconv_pl.io.run_lock import (
    LOCK_NAME,
    RunLockedError,
    acquire_run_lock,
    check_run_unlocked,
    is_launching_process,
)

TAKE_LOCK = """\
import sys
from pathlib import Path
from attnconv_pl.io.run_lock import RunLockedError, acquire_run_lock
try:
    acquire_run_lock(Path(sys.argv[1]))
except RunLockedError as error:
    print(error, flush=True)
    sys.exit(2)
print("held", flush=True)
sys.stdin.read()
"""
"""A process that takes the lock of the run directory ``argv[1]`` and holds it until its stdin
closes, then exits normally; or prints the error and exits with status 2."""


def start_taking_lock(run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TAKE_LOCK, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


@contextmanager
def lock_held_by_another_process(run_dir: Path):
    """Yield the pid of another process that holds the lock of ``run_dir``; it exits normally after."""
    holder = start_taking_lock(run_dir)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder.pid
    finally:
        holder.communicate(timeout=30)


def dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_lock(run_dir: Path, pid: int, host: str) -> Path:
    """A lock file as a process ``pid`` of ``host`` writes it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    path.write_text(json.dumps({"pid": pid, "host": host}) + "\n")
    return path


def lock_content(run_dir: Path) -> dict:
    return json.loads((run_dir / LOCK_NAME).read_text())


def test_a_second_process_is_refused_with_who_holds_the_lock_and_what_to_do(tmp_path):
    run_dir = tmp_path / "runs" / "exp" / "run"
    with acquire_run_lock(run_dir):
        assert lock_content(run_dir) == {"pid": os.getpid(), "host": socket.gethostname()}
        other = start_taking_lock(run_dir)
        message, _ = other.communicate(timeout=30)
        assert other.returncode == 2
        assert f"{run_dir} is locked by pid {os.getpid()} on {socket.gethostname()}" in message
        assert "another process is writing this run directory" in message
        assert f"delete {run_dir / LOCK_NAME}" in message
        assert lock_content(run_dir)["pid"] == os.getpid()
    assert not (run_dir / LOCK_NAME).exists()


def test_a_live_holder_keeps_the_lock_and_its_normal_exit_removes_it(tmp_path):
    with lock_held_by_another_process(tmp_path) as pid:
        with pytest.raises(RunLockedError, match=f"locked by pid {pid} on "):
            acquire_run_lock(tmp_path)
        with pytest.raises(RunLockedError, match=f"locked by pid {pid} on "):
            check_run_unlocked(tmp_path)
    assert not (tmp_path / LOCK_NAME).exists()
    check_run_unlocked(tmp_path)
    acquire_run_lock(tmp_path).release()


def test_only_one_of_several_processes_starting_at_once_gets_the_lock(tmp_path):
    processes = [start_taking_lock(tmp_path) for _ in range(4)]
    answers = [process.stdout.readline() for process in processes]
    for process in processes:
        process.communicate(timeout=30)
    assert answers.count("held\n") == 1, answers
    assert not (tmp_path / LOCK_NAME).exists()


def test_the_lock_of_a_dead_process_is_taken_over_with_a_notice(tmp_path, capsys):
    pid = dead_pid()
    write_lock(tmp_path, pid, socket.gethostname())
    check_run_unlocked(tmp_path)
    with acquire_run_lock(tmp_path):
        assert lock_content(tmp_path)["pid"] == os.getpid()
    assert capsys.readouterr().err == (f"note: {tmp_path / LOCK_NAME} named pid {pid} on {socket.gethostname()}, "
                                       "which no longer runs; taking the lock over\n")
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_naming_this_pid_is_from_an_earlier_process_and_stale(tmp_path):
    """Pids repeat after a container restarts: a lock naming this process, which did not take it."""
    write_lock(tmp_path, os.getpid(), socket.gethostname())
    with acquire_run_lock(tmp_path):
        assert lock_content(tmp_path)["pid"] == os.getpid()


def test_a_lock_of_another_host_is_respected_and_the_error_says_how_to_remove_it(tmp_path):
    write_lock(tmp_path, dead_pid(), "node-17.elsewhere")
    with pytest.raises(RunLockedError) as refused:
        acquire_run_lock(tmp_path)
    message = str(refused.value)
    assert "on node-17.elsewhere (another host, so whether it still runs cannot be checked from here)" in message
    assert f"if that process is gone, delete {tmp_path / LOCK_NAME}" in message
    assert isinstance(refused.value, ValueError)  # a ConfigError: train.py prints one `error:` line


def test_an_unreadable_lock_is_respected(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")
    with pytest.raises(RunLockedError, match="locked by a process whose lock file cannot be read"):
        acquire_run_lock(tmp_path)


def test_acquiring_again_returns_the_same_lock_and_release_is_idempotent(tmp_path):
    run_dir = tmp_path / "new" / "run"
    lock = acquire_run_lock(run_dir)
    assert acquire_run_lock(run_dir) is lock
    lock.release()
    assert not (run_dir / LOCK_NAME).exists()
    lock.release()
    assert acquire_run_lock(run_dir) is not lock
    acquire_run_lock(run_dir).release()


def test_release_leaves_the_lock_of_a_process_that_took_it_over(tmp_path):
    lock = acquire_run_lock(tmp_path)
    other = write_lock(tmp_path, os.getppid(), socket.gethostname()).read_text()
    lock.release()
    assert (tmp_path / LOCK_NAME).read_text() == other


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_release_its_parents_lock(tmp_path):
    """Data loader workers are forked from the holder and inherit its atexit release."""
    lock = acquire_run_lock(tmp_path)
    child = os.fork()
    if child == 0:
        lock.release()
        os._exit(0)
    os.waitpid(child, 0)
    assert lock_content(tmp_path)["pid"] == os.getpid()
    lock.release()


@pytest.mark.parametrize("env, launching", [
    ({}, True),
    ({"LOCAL_RANK": "0", "RANK": "0", "NODE_RANK": "0"}, True),
    ({"SLURM_PROCID": "0"}, True),
    ({"LOCAL_RANK": "1"}, False),
    ({"LOCAL_RANK": "0", "RANK": "2"}, False),
    ({"SLURM_PROCID": "3"}, False),
    ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
])
def test_only_the_launching_process_is_the_one_to_take_the_lock(monkeypatch, env, launching):
    for name in ("LOCAL_RANK", "RANK", "SLURM_PROCID", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert is_launching_process() is launching
