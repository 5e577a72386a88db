"""One writer per run directory: the lock file ``<run_dir>/.lock``.

The process that writes a run directory holds ``<run_dir>/.lock``, a one-line JSON file with its
pid and host (``{"pid": 1234, "host": "gpu-3"}``), created with ``O_CREAT | O_EXCL`` so that of
two processes starting at once exactly one gets it. The holder removes it when it exits normally
(``RunLock.release``, registered with ``atexit``; a ``RunLock`` is also a context manager).

A process that was killed leaves its lock behind. A lock whose pid no longer runs on this host is
stale: the next writer takes it over with a one-line notice. A lock written on another host is
always respected (its pid cannot be checked from here): the error says how to remove it.

Only the process the user started takes the lock (``is_launching_process``), not the DDP workers
that Lightning's launcher, torchrun or SLURM start for it.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from attnconv_pl.errors import ConfigError

__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "acquire_run_lock", "check_run_unlocked",
           "is_launching_process"]

LOCK_NAME = ".lock"
RANK_VARIABLES = ("LOCAL_RANK", "RANK", "SLURM_PROCID", "NODE_RANK")
"""Environment variables that are set, and not "0", in the worker processes of a DDP run."""


@dataclass(frozen=True)
class Holder:
    """The process named in a lock file; both None when the file could not be read."""

    pid: Optional[int]
    host: Optional[str]

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}" if self.pid is not None else \
            "a process whose lock file cannot be read (or is being written)"


class RunLockedError(ConfigError):
    """Another live process holds the lock of a run directory."""

    def __init__(self, run_dir: Path, holder: Holder):
        elsewhere = " (another host, so whether it still runs cannot be checked from here)" \
            if holder.host not in (None, socket.gethostname()) else ""
        super().__init__(
            f"{run_dir} is locked by {holder}{elsewhere}: another process is writing this run directory; "
            f"wait for it to finish or stop it, or, if that process is gone, delete {run_dir / LOCK_NAME} "
            "and start again")
        self.run_dir = run_dir
        self.holder = holder


class RunLock:
    """The lock of ``run_dir`` held by this process (see ``acquire_run_lock``)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.path = run_dir / LOCK_NAME
        self.pid = os.getpid()
        self.key = self.path.resolve()

    def release(self) -> None:
        """Remove the lock file if it still names this process; calling it again does nothing.

        A process forked from the holder (a data loader worker) never removes it, and neither does a
        holder whose stale-looking lock another process took over.
        """
        if os.getpid() != self.pid or _held.get(self.key) is not self:
            return
        del _held[self.key]
        if _read_holder(self.path) == Holder(self.pid, socket.gethostname()):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


_held: dict[Path, RunLock] = {}
"""The locks this process holds, by resolved lock file path."""


def _read_holder(path: Path) -> Optional[Holder]:
    """The holder named in a lock file; None when there is no file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        content = json.loads(text)
        return Holder(int(content["pid"]), str(content["host"]))
    except (ValueError, KeyError, TypeError):
        return Holder(None, None)


def _is_stale(holder: Holder) -> bool:
    """Whether the holder is a process of this host that no longer runs.

    A lock naming this very process, which does not hold it, is from an earlier process that had
    the same pid (pids repeat after a container restarts) and is stale too.
    """
    if holder.pid is None or holder.host != socket.gethostname():
        return False
    if holder.pid == os.getpid():
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return False


def _remove_stale(path: Path, stale: Holder) -> None:
    """Remove a stale lock file, unless another process replaced it meanwhile.

    The file is first renamed aside, atomically, and removed only if it is still the stale one; a
    fresh lock that another process took in between is put back.
    """
    aside = path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another process removed it first
    if _read_holder(aside) != stale:
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    aside.unlink()


def _create(path: Path, content: str) -> bool:
    """Create the lock file with ``content``, or return False if it exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    return True


def check_run_unlocked(run_dir: Path) -> None:
    """Return if a writer could take the lock of ``run_dir`` now: no lock, or a stale one.

    Raises:
        RunLockedError: a live process (or one on another host) holds it.
    """
    holder = _read_holder(run_dir / LOCK_NAME)
    if holder is not None and not _is_stale(holder):
        raise RunLockedError(run_dir, holder)


def acquire_run_lock(run_dir: Path) -> RunLock:
    """Take the lock of ``run_dir`` (created if missing) for this process until it exits.

    A stale lock (its pid no longer runs on this host) is taken over with a notice on stderr. If this
    process already holds the lock, the same ``RunLock`` is returned.

    Raises:
        RunLockedError: another live process, or a process on another host, holds it.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    held = _held.get(path.resolve())
    if held is not None and held.pid == os.getpid():
        return held
    content = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n"
    while not _create(path, content):
        holder = _read_holder(path)
        if holder is None:
            continue  # released meanwhile
        if not _is_stale(holder):
            raise RunLockedError(run_dir, holder)
        print(f"note: {path} named {holder}, which no longer runs; taking the lock over", file=sys.stderr)
        _remove_stale(path, holder)
    lock = RunLock(run_dir)
    _held[lock.key] = lock
    atexit.register(lock.release)
    return lock


def is_launching_process() -> bool:
    """True in the process the user started, False in the DDP workers started for it.

    Lightning's subprocess launcher sets ``LOCAL_RANK`` in the workers it starts (it is unset in the
    launching process); torchrun and SLURM set ``LOCAL_RANK``/``RANK``/``SLURM_PROCID`` in every
    process, "0" in the first one; ``NODE_RANK`` is not "0" on every node but the first.
    """
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)
