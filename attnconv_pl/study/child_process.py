"""Child processes that do not outlive their parent: stopped when the parent is interrupted (Ctrl-C
or SIGTERM), and sent SIGTERM by the kernel when the parent dies any other way (Linux)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Optional

EXIT_INTERRUPTED = 130
"""Exit status of a process ended by an interrupt (128 + SIGINT)."""

PR_SET_PDEATHSIG = 1
"""``prctl`` option of Linux (``<linux/prctl.h>``): the signal a process gets when its parent dies."""


def die_with_this_process() -> Optional[Callable[[], None]]:
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies, even by SIGKILL
    (Linux ``prctl(PR_SET_PDEATHSIG)``); None where ``prctl`` does not exist (macOS): there the
    child is stopped only when this process is interrupted (``run_child``)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_death_signal() -> None:
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the runner died before prctl took effect
            os._exit(EXIT_INTERRUPTED)

    return set_death_signal


def stop(child: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the child, then SIGKILL after ``grace_s`` seconds or at a second interrupt."""
    if child.poll() is not None:
        return
    print(f"stopping the running child (pid {child.pid}); it is killed if it has not "
          f"exited in {grace_s:.0f} s, or at a second Ctrl-C", file=sys.stderr, flush=True)
    child.terminate()
    try:
        child.wait(timeout=grace_s)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        child.kill()
        child.wait()


def run_child(command: Sequence[str], grace_s: float, **popen_args: Any) -> int:
    """Run a command to its end and return its exit status. The child does not outlive this
    process: it is stopped when this process is interrupted (``stop``, ``grace_s`` seconds before
    SIGKILL), and gets SIGTERM when this process dies otherwise (on Linux)."""
    child = subprocess.Popen(command, preexec_fn=die_with_this_process(), **popen_args)
    try:
        return child.wait()
    except KeyboardInterrupt:
        stop(child, grace_s)
        raise


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` like Ctrl-C, so that both stop the
    running child and end the study with ``EXIT_INTERRUPTED``."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
