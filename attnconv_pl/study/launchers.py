"""Where a study's ``train.py`` runs run: on this machine, N at a time (:class:`LocalLauncher`), or
on a SLURM cluster through submitit, one job per run (:class:`SlurmLauncher`).

Both have one interface: ``capacity`` (runs at a time; None: no limit), ``start(job, slot)``
(returns a handle), ``where(handle)`` (for the start line), ``poll(handle)`` (None while the run
is going, else its :class:`Ended`) and ``stop(handles)`` (on Ctrl-C). :func:`run_jobs` drives
either: it starts runs while slots are free, prints each running run's epoch and validation
accuracy as its ``metrics.csv`` grows, and one line at each run's end.

A run is a :class:`TrainJob`. It resumes from ``<run_dir>/checkpoints/last.ckpt`` whenever that
file exists when it starts (the study runner deletes the run directory of a run that must start
afresh), so a SLURM job requeued after preemption or at its time limit resumes where the
previous attempt left off.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from attnconv_pl.errors import StudyError
from attnconv_pl.study import jobs
from attnconv_pl.study.child_process import die_with_this_process, stop
from attnconv_pl.study.jobs import Ended, TrainJob, appended_log, child_env
from attnconv_pl.study.progress import RunProgress

SUBMITIT_FOLDER = "slurm"
"""Subfolder of a run directory with submitit's files of its SLURM jobs (job scripts, logs)."""
POLL_S = 1.0
"""Seconds between two looks at the running runs (exit, ``metrics.csv``)."""


def log_tail(log: Path, lines: int = 8) -> list[str]:
    """The last non-empty lines of a log, progress-bar redraws removed."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    kept = [line.split("\r")[-1].rstrip() for line in text.splitlines()]
    return [line for line in kept if line][-lines:]


def final_line(log: Path) -> str:
    """The ``final: val/...`` line ``train.py`` prints at the end of a run, or ""."""
    return next((line.split(":", 1)[1].strip() for line in reversed(log_tail(log, 20))
                 if line.startswith("final:")), "")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------- on this machine

def device_slots(jobs: int, devices: Sequence[str]) -> list[Optional[str]]:
    """The ``CUDA_VISIBLE_DEVICES`` of each of ``jobs`` slots (None: leave it as it is, no GPU).

    With at least as many devices as slots, each slot gets its own equal share (contiguous; the
    remainder is left unused, so that every run trains on as many GPUs); with fewer, slots share
    the devices round-robin, one device each.
    """
    if not devices:
        return [None] * jobs
    if len(devices) < jobs:
        return [devices[slot % len(devices)] for slot in range(jobs)]
    share = len(devices) // jobs
    return [",".join(devices[slot * share:(slot + 1) * share]) for slot in range(jobs)]


def visible_devices() -> list[str]:
    """The CUDA devices this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else every
    device torch finds (none without CUDA)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [device.strip() for device in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if device.strip()]
    import torch  # only here: the runner itself needs no torch

    return [str(index) for index in range(torch.cuda.device_count())]


@dataclass(frozen=True)
class LocalRun:
    """A ``train.py`` child of :class:`LocalLauncher` and the ``CUDA_VISIBLE_DEVICES`` it got."""

    process: subprocess.Popen
    devices: Optional[str]


class LocalLauncher:
    """``train.py`` children of this process, ``jobs`` at a time, each on its own devices
    (:func:`device_slots`); output appended to the run's ``train.log``."""

    def __init__(self, jobs: int = 1, devices: Optional[Sequence[str]] = None):
        if jobs < 1:
            raise StudyError(f"--jobs {jobs}: give the number of runs to train at a time, 1 or more")
        if devices is None:
            devices = visible_devices() if jobs > 1 else []  # one at a time: the environment as it is
        self.devices = device_slots(jobs, list(devices))
        self.capacity: Optional[int] = jobs

    def start(self, job: TrainJob, slot: int) -> LocalRun:
        devices = self.devices[slot]
        env = child_env(**({} if devices is None else {"CUDA_VISIBLE_DEVICES": devices}))
        with appended_log(job.log, job.command, job.argv()) as log:
            process = subprocess.Popen([*job.command, *job.argv()], env=env, stdout=log,
                                       stderr=subprocess.STDOUT, preexec_fn=die_with_this_process())
        return LocalRun(process, devices)

    def where(self, handle: LocalRun) -> str:
        return f" on GPU {handle.devices}" if handle.devices is not None else ""

    def poll(self, handle: LocalRun) -> Optional[Ended]:
        status = handle.process.poll()
        return None if status is None else Ended(status)

    def stop(self, handles: Sequence[LocalRun]) -> None:
        for handle in handles:
            stop(handle.process, jobs.STOP_GRACE_S)


# ---------------------------------------------------------------- on a SLURM cluster

SLURM_KEYS = ("partition", "time", "gpus_per_run", "cpus_per_run", "mem_gb", "sbatch")
"""Keys of a study file's ``slurm:`` mapping (the flags ``--partition``, ``--time``, ... override them)."""
SLURM_TIME = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?$")
SIGNAL_DELAY_S = 120
"""Seconds before the time limit at which SLURM signals a job (submitit then stops ``train.py``,
which has :data:`~attnconv_pl.study.jobs.STOP_GRACE_S` to exit, and requeues the job)."""


def slurm_minutes(value: Any) -> int:
    """A SLURM time limit in whole minutes (rounded up): an integer (minutes) or SLURM's
    ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``.

    Raises:
        StudyError: not a time in one of these forms, or zero.
    """
    match = SLURM_TIME.match(str(value).strip()) if not isinstance(value, bool) else None
    if match is None:
        raise StudyError(f"time {value!r} is not a SLURM time limit; give minutes (90) or "
                         "HH:MM:SS (24:00:00) or D-HH:MM:SS (2-00:00:00)")
    days, a, b, c = (int(match[name]) if match[name] else None for name in ("days", "a", "b", "c"))
    if days is not None:
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:
        seconds = a * 3600 + b * 60 + c
    else:
        seconds = a * 60 + (b or 0)
    if seconds <= 0:
        raise StudyError(f"time {value!r} is zero; give the wall-clock limit of one run's job")
    return math.ceil(seconds / 60)


@dataclass(frozen=True)
class SlurmResources:
    """What each run's SLURM job asks for: one node, one task per GPU (Lightning's SLURM way of
    running DDP; one task without GPUs), ``cpus_per_run`` shared out among the tasks.

    Attributes:
        time_min: wall-clock limit of a job, minutes; a run that needs longer is requeued and
            resumes (at most three times: submitit's ``max_num_timeout``).
        partition: the SLURM partition (None: the cluster's default).
        gpus_per_run: GPUs of a job.
        cpus_per_run: CPU cores of a job (None: the cluster's default).
        mem_gb: memory of a job, GB (None: the cluster's default).
        sbatch: further ``#SBATCH`` options as ``(name, value)`` (``account``, ``qos``, ``constraint``, ...).
    """

    time_min: int
    partition: Optional[str] = None
    gpus_per_run: int = 0
    cpus_per_run: Optional[int] = None
    mem_gb: Optional[float] = None
    sbatch: tuple[tuple[str, str], ...] = field(default=())

    @property
    def tasks(self) -> int:
        return max(self.gpus_per_run, 1)

    def sbatch_options(self, name: str) -> list[str]:
        """The ``#SBATCH`` options of the job ``name`` that come from these resources, as submitit
        writes them into the job's script (sorted by name; submitit adds its own ``--output``,
        ``--error``, ``--open-mode`` and ``--wckey``): what ``--dry_run`` shows without ``sbatch``."""
        mem = None if self.mem_gb is None else (f"{int(self.mem_gb)}GB" if self.mem_gb == int(self.mem_gb)
                                                else f"{int(self.mem_gb * 1024)}MB")
        cpus = max(self.cpus_per_run // self.tasks, 1) if self.cpus_per_run else None
        options = {"job-name": name, "time": self.time_min, "nodes": 1, "ntasks-per-node": self.tasks,
                   "gpus-per-node": self.gpus_per_run, "signal": f"USR2@{SIGNAL_DELAY_S}", "partition": self.partition,
                   "cpus-per-task": cpus, "mem": mem, **{key.replace("_", "-"): value for key, value in self.sbatch}}
        return [f"--{key}={shlex.quote(str(value))}" for key, value in sorted(options.items()) if value is not None]

    def parameters(self, name: str) -> dict[str, Any]:
        """Keywords of submitit's ``AutoExecutor.update_parameters`` for the job ``name``."""
        optional = {"slurm_partition": self.partition, "mem_gb": self.mem_gb,
                    "cpus_per_task": max(self.cpus_per_run // self.tasks, 1) if self.cpus_per_run else None}
        return {"name": name, "timeout_min": self.time_min, "nodes": 1, "tasks_per_node": self.tasks,
                "gpus_per_node": self.gpus_per_run, "slurm_signal_delay_s": SIGNAL_DELAY_S,
                "slurm_additional_parameters": dict(self.sbatch),
                **{key: value for key, value in optional.items() if value is not None}}


def positive_int(settings: Mapping[str, Any], key: str, where: str) -> Optional[int]:
    value = settings.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StudyError(f"{where}: {key} must be a whole number of 0 or more; got {value!r}")
    return value


def slurm_resources(settings: Mapping[str, Any], where: str) -> SlurmResources:
    """The resources of ``settings`` (a study file's ``slurm:`` mapping updated with the flags;
    keys :data:`SLURM_KEYS`).

    Raises:
        StudyError: an unknown key, a value of the wrong kind, or no ``time``.
    """
    unknown = sorted(set(settings) - set(SLURM_KEYS))
    if unknown:
        raise StudyError(f"{where}: unknown slurm setting(s) {', '.join(unknown)}; the settings are "
                         f"{', '.join(SLURM_KEYS)} (other #SBATCH options go under sbatch: {{account: ...}})")
    if settings.get("time") is None:
        raise StudyError(f"{where}: --launcher slurm needs the time limit of a run's job: --time 24:00:00, or "
                         "`time:` under `slurm:` in the study file (a run that needs longer is requeued and "
                         "resumes from last.ckpt)")
    sbatch = settings.get("sbatch") or {}
    if not isinstance(sbatch, Mapping):
        raise StudyError(f"{where}: sbatch must be a mapping of #SBATCH options, e.g. {{account: my_account}}")
    mem_gb = settings.get("mem_gb")
    if mem_gb is not None and (isinstance(mem_gb, bool) or not isinstance(mem_gb, (int, float)) or mem_gb <= 0):
        raise StudyError(f"{where}: mem_gb must be a positive number of GB; got {mem_gb!r}")
    partition = settings.get("partition")
    return SlurmResources(
        time_min=slurm_minutes(settings["time"]), partition=None if partition is None else str(partition),
        gpus_per_run=positive_int(settings, "gpus_per_run", where) or 0,
        cpus_per_run=positive_int(settings, "cpus_per_run", where), mem_gb=mem_gb,
        sbatch=tuple((str(key), str(value)) for key, value in sbatch.items()))


def import_slurm_job() -> Any:
    """The module of the SLURM job callable (it needs submitit, an optional dependency).

    Raises:
        StudyError: submitit is not installed.
    """
    try:
        from attnconv_pl.study import slurm_job
    except ModuleNotFoundError as error:
        if error.name != "submitit":
            raise
        raise StudyError("--launcher slurm needs submitit: pip install 'attnconv-pl[slurm]' "
                         "(or pip install submitit)") from error
    return slurm_job


class SlurmLauncher:
    """One submitit job per run (in ``<run_dir>/slurm/``), all submitted at once; SLURM queues them.

    ``cluster`` is submitit's executor: ``"slurm"``, or ``"local"`` to run the same jobs on this
    machine (submitit's local executor, ``--launcher submitit-local``: real processes through the
    same job code, which also delivers the time-limit signal and requeues).
    """

    capacity: Optional[int] = None

    def __init__(self, resources: SlurmResources, name: str, cluster: str = "slurm"):
        self.slurm_job = import_slurm_job()
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise StudyError("--launcher slurm submits jobs with sbatch, which is not found here: run the study "
                             "on a login node of the SLURM cluster (or leave --launcher out to train on this machine)")
        self.resources = resources
        self.name = name
        self.cluster = cluster

    def start(self, job: TrainJob, slot: int) -> Any:
        executor = self.slurm_job.submitit.AutoExecutor(folder=job.run_dir / SUBMITIT_FOLDER, cluster=self.cluster)
        executor.update_parameters(**self.resources.parameters(f"{self.name}/{job.run_dir.name}"))
        try:
            return executor.submit(self.slurm_job.SlurmTrain(job))
        except (RuntimeError, OSError) as error:  # sbatch refused the job; its message says why
            raise StudyError(f"submitting the job of {job.run_dir.name} failed: {error}\nchange the resources "
                             "(--partition, --time, --gpus-per-run, ... or the study file's slurm:) and rerun; "
                             "jobs already submitted are cancelled") from error

    def where(self, handle: Any) -> str:
        kind = "SLURM" if self.cluster == "slurm" else f"submitit {self.cluster}"
        return f" as {kind} job {handle.job_id}"

    def poll(self, handle: Any) -> Optional[Ended]:
        if not handle.done():
            return None
        try:
            return Ended(int(handle.result()))
        except Exception as error:  # submitit raises the job's failure (not requeued, killed, ...)
            lines = str(error).strip().splitlines()
            return Ended(-1, f"job {handle.job_id} failed: {lines[-1] if lines else type(error).__name__}; "
                             f"its output: {handle.paths.stderr}")

    def stop(self, handles: Sequence[Any]) -> None:
        for handle in handles:
            handle.cancel(check=False)
        if handles:
            print(f"cancelled job(s) {' '.join(str(handle.job_id) for handle in handles)}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- driving a launcher

def run_jobs(launcher: Any, jobs: Sequence[TrainJob]) -> dict[TrainJob, Ended]:
    """Run every job through ``launcher``, at most ``launcher.capacity`` at a time, in order; print
    a line at each start and end and a progress line per new epoch of each running run. On
    Ctrl-C (``KeyboardInterrupt``) or an error the running jobs are stopped and it goes on.

    Returns:
        How each job ended, in the order the jobs ended.
    """
    waiting = list(jobs)
    running: dict[TrainJob, tuple[Any, int, float, RunProgress]] = {}
    ended: dict[TrainJob, Ended] = {}
    capacity = launcher.capacity or len(jobs)
    try:
        while waiting or running:
            while waiting and len(running) < capacity:
                job = waiting.pop(0)
                slot = min(set(range(capacity)) - {entry[1] for entry in running.values()})
                resumes = job.resumes()
                handle = launcher.start(job, slot)
                print(f"{job.label}: {'resuming from last.ckpt' if resumes else 'training'}{launcher.where(handle)} "
                      f"in {job.run_dir} (log: {job.log})", flush=True)
                running[job] = (handle, slot, time.perf_counter(), RunProgress(job.run_dir))
            time.sleep(POLL_S)
            for job, (handle, _, started, progress) in list(running.items()):
                outcome = launcher.poll(handle)
                line = progress.update()
                if line:
                    print(f"{job.label}: {line}", flush=True)
                if outcome is not None:
                    del running[job]
                    ended[job] = outcome
                    print_end(job, outcome, time.perf_counter() - started)
    except BaseException:
        launcher.stop([entry[0] for entry in running.values()])
        raise
    return ended


def print_end(job: TrainJob, outcome: Ended, seconds: float) -> None:
    """The line at a run's end: its time and final validation numbers, or its failure and log tail."""
    if outcome.status == 0:
        final = final_line(job.log)
        print(f"{job.label}: done in {duration(seconds)}" + (f"; {final}" if final else ""), flush=True)
        return
    tail = "\n".join(f"    {line}" for line in log_tail(job.log))
    note = f"; {outcome.note}" if outcome.note else ""
    print(f"{job.label}: FAILED (exit status {outcome.status}) after {duration(seconds)}; log: {job.log}{note}\n{tail}",
          flush=True)

