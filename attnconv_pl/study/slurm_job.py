"""The callable a study's SLURM job runs (submitit, an optional dependency: imported by
``attnconv_pl.study.launchers`` only for ``--launcher slurm``).

Each task of the job runs ``train.py`` as a child process, as Lightning expects under SLURM (one
task per GPU; task 0 writes ``train.log``, task N ``train.rankN.log``). When the job is preempted
or reaches its time limit, SLURM signals it (``SIGUSR2``, ``SIGNAL_DELAY_S`` before the limit) and
submitit calls :meth:`SlurmTrain.checkpoint` in task 0: it stops ``train.py`` (SIGTERM: Lightning
stops after the current batch and the run lock is released) and resubmits the same callable,
which, started again, resumes from ``last.ckpt`` (:meth:`TrainJob.argv`). ``train.py`` itself
ignores ``SIGUSR2``, so the stop is always the orderly one.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Optional

import submitit

from attnconv_pl.study.child_process import die_with_this_process, stop
from attnconv_pl.study.jobs import STOP_GRACE_S, TrainJob, appended_log, child_env

PREEMPTION_SIGNAL = signal.SIGUSR2
"""The signal submitit asks SLURM to send at preemption and before the time limit (its default)."""


def ignoring_preemption() -> Callable[[], None]:
    """A ``preexec_fn`` for ``train.py``: ignore the preemption signal (SLURM may deliver it to
    every process of the job), and get SIGTERM when this process dies (Linux)."""
    die_with_parent = die_with_this_process()

    def setup() -> None:
        signal.signal(PREEMPTION_SIGNAL, signal.SIG_IGN)
        if die_with_parent is not None:
            die_with_parent()

    return setup


class SlurmTrain(submitit.helpers.Checkpointable):
    """Run one :class:`TrainJob` in a submitit job; returns ``train.py``'s exit status."""

    def __init__(self, job: TrainJob):
        self.job = job
        self.child: Optional[subprocess.Popen] = None

    def __call__(self) -> int:
        rank = submitit.JobEnvironment().global_rank
        log = self.job.log if rank == 0 else self.job.run_dir / f"train.rank{rank}.log"
        argv = self.job.argv()
        with appended_log(log, self.job.command, argv) as handle:
            self.child = subprocess.Popen([*self.job.command, *argv], env=child_env(),
                                          stdout=handle, stderr=subprocess.STDOUT, preexec_fn=ignoring_preemption())
            # waited for in another thread, so that checkpoint(), a signal handler of this thread, can
            # wait for the child too (Popen.wait in this thread would hold the lock it needs)
            waiter = threading.Thread(target=self.child.wait, daemon=True)
            waiter.start()
            try:
                waiter.join()
            except KeyboardInterrupt:  # the job was cancelled
                stop(self.child, STOP_GRACE_S)
                raise
            return self.child.returncode

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Stop ``train.py`` and requeue this run; the next attempt resumes from ``last.ckpt``."""
        if self.child is not None and self.child.poll() is None:
            with self.job.log.open("a") as log:
                log.write("# preempted or at the time limit: train.py stopped; the requeued job resumes "
                          "from last.ckpt\n")
            stop(self.child, STOP_GRACE_S)
        return submitit.helpers.DelayedSubmission(SlurmTrain(self.job))

    def __getstate__(self) -> dict:
        return {"job": self.job, "child": None}
