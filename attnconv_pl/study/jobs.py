"""One run's ``train.py`` call as the study's launchers start it (:class:`TrainJob`), how it
ended (:class:`Ended`), and the environment and log file every launcher gives it."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

LOG_NAME = "train.log"
"""File in the run directory that gets the run's ``train.py`` output."""
STOP_GRACE_S = 30.0
"""Seconds a child (``train.py``) has to exit after SIGTERM when it is stopped, before it is
killed; Lightning stops at the next batch."""


@dataclass(frozen=True)
class TrainJob:
    """One run's ``train.py`` call, as a launcher starts it (pickled into a SLURM job).

    Attributes:
        label: the run in console lines, ``[2/6] conv_net-seed1``.
        run_dir: the run directory; its ``train.log`` gets the output.
        command: what starts ``train.py``: ``(python, -m, train)``.
        args: its arguments, without ``--ckpt_path`` (see :meth:`argv`).
    """

    label: str
    run_dir: Path
    command: tuple[str, ...]
    args: tuple[str, ...]

    @property
    def log(self) -> Path:
        return self.run_dir / LOG_NAME

    @property
    def last_checkpoint(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    def resumes(self) -> bool:
        """Whether the run continues from ``last.ckpt`` if it starts now."""
        return self.last_checkpoint.is_file()

    def argv(self) -> list[str]:
        """The script's arguments now: with ``--ckpt_path last.ckpt`` when that file exists."""
        return [*self.args, *(["--ckpt_path", str(self.last_checkpoint)] if self.resumes() else [])]


@dataclass(frozen=True)
class Ended:
    """How a run ended: ``train.py``'s exit status, and a note when the launcher knows more
    (a SLURM job that failed before or around ``train.py``)."""

    status: int
    note: str = ""


def shown(command: Sequence[str], args: Sequence[str]) -> str:
    """A command as a user would type it: ``python -m train ...`` (``python`` for this interpreter)."""
    return shlex.join(["python" if command[0] == sys.executable else command[0], *command[1:], *args])


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a ``train.py`` child: this process's, unbuffered, plus ``extra``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("ATTNCONV_RUN_ID", None)  # train.py passes the run id to its DDP workers through it
    return env


@contextmanager
def appended_log(log: Path, command: Sequence[str], args: Sequence[str]) -> Iterator[IO[str]]:
    """``log`` opened for appending, after a line with the date and the command."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {shown(command, args)}\n")
        handle.flush()
        yield handle
