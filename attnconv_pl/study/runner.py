"""Run a study: every variant of a config for every seed through ``train.py``, then one report.

    python -m attnconv_pl.study --config configs/studies/attention_vs_conv_digits.yaml --seeds 0 1 2
    python -m attnconv_pl.study --config configs/attention_vs_conv_digits.yaml    # the study naming it
    python -m attnconv_pl.study --config configs/studies/NAME.yaml --out reports/NAME -- --trainer.max_epochs 3
    python -m attnconv_pl.study --config configs/studies/NAME.yaml --jobs 2        # two runs at a time
    python -m attnconv_pl.study --config configs/studies/NAME.yaml --launcher slurm --time 24:00:00 \\
        --partition gpu --gpus_per_run 1 --cpus_per_run 8 --mem 32 -- --trainer.accelerator gpu

A study file (``configs/studies/<name>.yaml``) names a ``train.py`` config and its variants, each a
list of ``train.py`` flags added to that config; ``probe`` optionally lists flags of the report's
``probe.py`` call::

    config: ../attention_vs_conv_digits.yaml       # relative to the study file
    variants:
      attention_net: [--model.init_args.arch, attention_net]
      conv_net: [--model.init_args.arch, conv_net]
    probe: [--dynamics.topology, false]
    slurm: {time: "24:00:00", partition: gpu, gpus_per_run: 1, sbatch: {account: my_lab}}   # optional

Variant ``V`` with seed ``N`` is the run ``<runs_dir>/<name>/V-seedN/``, trained by ``train.py``
(started as ``python -m train``, the installed module, from any folder)

    python -m train --config CONFIG VARIANT_FLAGS EXTRA_FLAGS --seed_everything N \\
        --experiment <name> --run_id V-seedN --runs_dir RUNS_DIR --wandb_group <name> --wandb_job_type V

in that order (every variant with the first seed, then with the next one, ...), its output in
``train.log`` of the run directory. ``--launcher local`` (the default) runs them on this
machine, ``--jobs N`` at a time (each on its own GPUs); ``--launcher slurm`` submits one SLURM
job per run through submitit (resources from the flags ``--time``, ``--partition``,
``--gpus_per_run``, ``--cpus_per_run``, ``--mem``, over the study file's ``slurm:``), requeued on
preemption or at its time limit and resumed from ``last.ckpt`` (see ``attnconv_pl/study/launchers.py``);
``--launcher submitit-local`` runs the same jobs through submitit's local executor (processes on this
machine), to try a SLURM study off the cluster. ``--dry_run`` parses every variant's ``train.py``
command line with ``train.py``'s own parser and prints each run's command (with a submitit launcher
also its job's ``#SBATCH`` options; no ``sbatch`` needed), training nothing. While runs train, \
each new epoch of a run prints a line with its validation accuracy (read from
its ``metrics.csv``). A run whose checkpoints reach its ``trainer.max_epochs`` is finished and
skipped (``--force`` trains it again from scratch); one with ``last.ckpt`` short of it resumes
from there; a failed run is reported with its log and the others still run. Then one ``probe.py`` \
call (``python -m probe``) over the finished runs writes the
comparison report (``--out``, default ``reports/<name>``), once every run has ended, where the
seeds of a variant form one group.

A run directory that another live process is writing (its ``.lock`` file, see
``attnconv_pl/io/run_lock.py``) is left alone and reported as failed. Stopping the runner (Ctrl-C,
SIGTERM) stops the running ``train.py`` children (SIGTERM, then SIGKILL after 30 s or at a second
Ctrl-C), or cancels the SLURM jobs; on Linux a child also gets SIGTERM when the runner is killed
(even by SIGKILL).

Exit status: 0 when every run finished and the report was written; 1 when a run or the report
failed (the report then holds the runs that finished); 2 for a bad study file or command line
(or SLURM job resources that sbatch refused); 130 when interrupted (Ctrl-C or SIGTERM).

The command line (``attnconv_pl/study/command_line.py``) spells its options with underscores
(``--runs_dir``, ``--dry_run``); the dashed ``--dry-run``, ``--gpus-per-run`` and ``--cpus-per-run``
of the previous release still work, with a deprecation line.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from attnconv_pl.errors import ProbeInputError, StudyError
from attnconv_pl.io.run_dir import read_run_config
from attnconv_pl.io.run_lock import RunLockedError, check_run_unlocked
from attnconv_pl.offline.checkpoints import epoch_checkpoints
from attnconv_pl.offline.options import parser_message
from attnconv_pl.study import jobs, launchers
from attnconv_pl.study.child_process import EXIT_INTERRUPTED, run_child, sigterm_as_interrupt
from attnconv_pl.study.command_line import SLURM_FLAGS, SUBMITIT_CLUSTERS, parse_command_line
from attnconv_pl.study.jobs import LOG_NAME, TrainJob, shown
from attnconv_pl.study.launchers import run_jobs, slurm_resources
from attnconv_pl.study.study_file import Study, resolve_study

TRAIN_COMMAND = (sys.executable, "-m", "train")
"""How a run's ``train.py`` starts: the installed module ``train`` (``attnconv-train``), from any folder."""
PROBE_COMMAND = (sys.executable, "-m", "probe")
"""How the report's ``probe.py`` starts (``attnconv-probe``)."""
RUNNER_FLAGS = ("--experiment", "--run_id", "--runs_dir", "--seed_everything", "--ckpt_path", "--wandb_group",
                "--wandb_job_type")
"""``train.py`` flags the runner sets itself for every run (not allowed after ``--``)."""
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class StudyRun:
    """One variant trained with one seed, in ``<runs_dir>/<study>/<variant>-seed<seed>/``."""

    variant: str
    seed: int
    run_dir: Path

    @property
    def run_id(self) -> str:
        return self.run_dir.name


def plan_runs(study: Study, seeds: Sequence[int], runs_dir: Path) -> list[StudyRun]:
    """Every variant with every seed, seed by seed (every variant with the first seed, then with
    the second, ...), so a study stopped early already compares all its variants."""
    return [StudyRun(variant, seed, runs_dir / study.name / f"{variant}-seed{seed}")
            for seed in seeds for variant in study.variants]


def run_state(run_dir: Path) -> str:
    """``"finished"``: ``epoch=<max_epochs>.ckpt`` exists, ``max_epochs`` read from the run's
    ``config.yaml``; ``"resume"``: not finished but ``config.yaml`` and ``checkpoints/last.ckpt``
    exist; ``"new"``: otherwise (nothing to continue from)."""
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return "new"
    try:
        max_epochs = (read_run_config(run_dir).get("trainer") or {}).get("max_epochs")
    except ProbeInputError:
        max_epochs = None
    return "finished" if isinstance(max_epochs, int) and max_epochs in epoch_checkpoints(run_dir) else "resume"


def check_extra_flags(extra: Sequence[str]) -> None:
    """Refuse ``train.py`` flags that the runner sets for every run.

    Raises:
        StudyError: naming the flag and what to use instead.
    """
    for token in extra:
        flag = token.split("=", 1)[0]
        if flag in RUNNER_FLAGS:
            raise StudyError(f"{flag} after -- is set by the study runner for every run (experiment = study "
                             "name, run id = <variant>-seed<N>); use the runner's --runs_dir and --seeds, and "
                             "rerun the same command to resume")


def train_parser() -> Any:
    """``train.py``'s own argument parser (:class:`attnconv_pl.cli.TrainCLI`'s), built without parsing
    anything; a refused command line raises ``ValueError`` with the parser's message instead of
    exiting."""
    from attnconv_pl.cli import TrainArgumentParser, TrainCLI

    class RefusingParser(TrainArgumentParser):
        def error(self, message: str, ex: Optional[Exception] = None) -> Any:
            raise ValueError(message)

    class Built(Exception):
        """Stops :class:`TrainCLI` once its parser is built: nothing is parsed or instantiated."""

    class ParserOnly(TrainCLI):
        def init_parser(self, **kwargs: Any) -> Any:
            self.parser_class = RefusingParser
            return super().init_parser(**kwargs)

        def parse_arguments(self, parser: Any, args: Any) -> None:
            raise Built(parser)

    try:
        ParserOnly(args=[])
    except Built as built:
        return built.args[0]
    raise AssertionError("TrainCLI parsed no arguments")


def check_train_args(study: Study, runs: Sequence[StudyRun], extra: Sequence[str]) -> None:
    """Parse every variant's ``train.py`` command line with ``train.py``'s parser (nothing is built
    or trained), so that a misspelled flag or a bad value stops the study before any run starts.

    Raises:
        StudyError: naming the variant and what ``train.py`` refuses.
    """
    parser = train_parser()
    first_runs: dict[str, StudyRun] = {}
    for run in runs:
        first_runs.setdefault(run.variant, run)
    for run in first_runs.values():
        try:
            parser.parse_args(list(train_args(study, run, extra)))
        except ValueError as error:
            after = " or after --" if extra else ""
            raise StudyError(f"variant {run.variant}: train.py refuses its command line: "
                             f"{parser_message(str(error))}; fix its flags in {study.path}{after} (python train.py "
                             "--help lists every option)") from None


def train_args(study: Study, run: StudyRun, extra: Sequence[str]) -> tuple[str, ...]:
    """The ``train.py`` arguments of a run: config, variant flags, extra flags, then the run's own
    (its W&B group is the study, its job type the variant). ``--ckpt_path`` is added when the run
    starts (``jobs.TrainJob.argv``)."""
    return ("--config", str(study.config), *study.variants[run.variant], *extra,
            "--seed_everything", str(run.seed), "--experiment", study.name, "--run_id", run.run_id,
            "--runs_dir", str(run.run_dir.parent.parent), "--wandb_group", study.name, "--wandb_job_type", run.variant)


def train_job(study: Study, run: StudyRun, extra: Sequence[str], label: str) -> TrainJob:
    return TrainJob(label=label, run_dir=run.run_dir, command=TRAIN_COMMAND, args=train_args(study, run, extra))


def probe_args(study: Study, run_dirs: Sequence[Path], out: Path) -> list[str]:
    """The ``probe.py`` arguments of the report over ``run_dirs``."""
    return [*map(str, run_dirs), "--out", str(out), *study.probe_flags]


def run_probe(args: Sequence[str]) -> int:
    """Run ``python -m probe ARGS`` (see ``run_child``), output to this process's; its exit status."""
    return run_child([*PROBE_COMMAND, *args], jobs.STOP_GRACE_S, env=jobs.child_env())


def train_runs(study: Study, runs: list[StudyRun], extra: Sequence[str], force: bool,
               launcher: Any) -> dict[str, list[StudyRun]]:
    """Train the runs through ``launcher``; returns them by outcome: trained, resumed, skipped, failed.

    A finished run is skipped (unless ``force``), a locked one fails without starting, a run to
    train afresh has its directory deleted first; the others become :class:`TrainJob` s.
    """
    outcomes: dict[str, list[StudyRun]] = {"trained": [], "resumed": [], "skipped": [], "failed": []}
    jobs: dict[TrainJob, tuple[StudyRun, str]] = {}
    for index, run in enumerate(runs, start=1):
        prefix = f"[{index}/{len(runs)}] {run.run_id}"
        state = "new" if force else run_state(run.run_dir)
        if state == "finished":
            print(f"{prefix}: finished before, skipped ({run.run_dir}; --force trains it again)", flush=True)
            outcomes["skipped"].append(run)
            continue
        try:
            check_run_unlocked(run.run_dir)
        except RunLockedError as error:
            print(f"{prefix}: FAILED, not started: {error}", flush=True)
            outcomes["failed"].append(run)
            continue
        if state == "new" and run.run_dir.exists():
            shutil.rmtree(run.run_dir)  # a forced run, or one that stopped before its first checkpoint
        run.run_dir.mkdir(parents=True, exist_ok=True)
        jobs[train_job(study, run, extra, prefix)] = (run, "resumed" if state == "resume" else "trained")
    for job, ended in run_jobs(launcher, list(jobs)).items():
        run, outcome = jobs[job]
        outcomes[outcome if ended.status == 0 else "failed"].append(run)
    return outcomes


def train_and_report(study: Study, runs: list[StudyRun], extra: Sequence[str], force: bool, out: Path,
                     launcher: Any) -> int:
    """Train the runs, then, once all have ended, write the report of those that finished;
    returns the exit status."""
    outcomes = train_runs(study, runs, extra, force, launcher)
    print(f"study {study.name}: " + ", ".join(f"{len(v)} {k}" for k, v in outcomes.items() if v), flush=True)
    for run in outcomes["failed"]:
        print(f"  failed: {run.run_id}: {run.run_dir / LOG_NAME}")
    finished = [run.run_dir for run in runs if run not in outcomes["failed"]]
    if not finished:
        print("study: no run finished, so no report", file=sys.stderr)
        return EXIT_FAILED
    print(f"report of {len(finished)} run(s): {shown(PROBE_COMMAND, probe_args(study, finished, out))}", flush=True)
    status = run_probe(probe_args(study, finished, out))
    if status != 0:
        print(f"study: probe.py failed (exit status {status}); see its message above", file=sys.stderr)
        return EXIT_FAILED
    print(f"report: {out / 'report.html'}")
    return EXIT_FAILED if outcomes["failed"] else 0


def job_resources(args: Any, study: Study) -> Optional[launchers.SlurmResources]:
    """The resources of each run's job under a submitit launcher (None for ``--launcher local``).

    Raises:
        StudyError: flags of the other launcher, or bad resources.
    """
    flags = {key: getattr(args, key) for key in SLURM_FLAGS if getattr(args, key) is not None}
    if args.launcher == "local":
        if flags:
            raise StudyError(f"{', '.join(SLURM_FLAGS[key] for key in flags)} set(s) a SLURM job's resources; "
                             "add --launcher slurm, or leave it out to train on this machine")
        return None
    if args.jobs is not None:
        raise StudyError(f"--jobs is for --launcher local; with --launcher {args.launcher} every run is its own job "
                         "and SLURM (or submitit) decides how many run at a time")
    return slurm_resources({**study.slurm, **flags}, f"{study.path} slurm: and flags")


def make_launcher(args: Any, study: Study, resources: Optional[launchers.SlurmResources]) -> Any:
    """The launcher the flags ask for, with the job ``resources`` of :func:`job_resources`.

    Raises:
        StudyError: submitit missing, or no ``sbatch`` here for ``--launcher slurm``.
    """
    if resources is None:
        return launchers.LocalLauncher(args.jobs or 1)
    return launchers.SlurmLauncher(resources, study.name, cluster=SUBMITIT_CLUSTERS[args.launcher])


def print_plan(study: Study, runs: list[StudyRun], extra: Sequence[str], force: bool, out: Path,
               resources: Optional[launchers.SlurmResources]) -> None:
    """Each run's state and ``train.py`` command (under a submitit launcher also its job's
    ``#SBATCH`` options, :meth:`~attnconv_pl.study.launchers.SlurmResources.sbatch_options`), then the
    report's ``probe.py`` command."""
    for run in runs:
        state = "new" if force else run_state(run.run_dir)
        action = {"finished": "skip (finished)", "resume": "resume from last.ckpt", "new": "train"}[state]
        print(f"{run.run_id}: {action}")
        if state != "finished":
            job = train_job(study, run, extra, run.run_id)
            print(f"  {shown(TRAIN_COMMAND, job.argv() if state == 'resume' else job.args)}")
            if resources is not None:
                print(f"  sbatch {' '.join(resources.sbatch_options(f'{study.name}/{run.run_id}'))} "
                      f"(job files in {run.run_dir / launchers.SUBMITIT_FOLDER})")
    print(f"report: {shown(PROBE_COMMAND, probe_args(study, [run.run_dir for run in runs], out))}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args, extra = parse_command_line(sys.argv[1:] if argv is None else argv, epilog=__doc__.split("\n\n", 1)[1])
    except SystemExit as stop:  # --help, or a bad command line (its message printed)
        return stop.code
    seeds = list(dict.fromkeys(args.seeds))
    try:
        study = resolve_study(Path(args.config))
        check_extra_flags(extra)
        resources = job_resources(args, study)
        runs = plan_runs(study, seeds, Path(args.runs_dir))
        check_train_args(study, runs, extra)
        launcher = None if args.dry_run else make_launcher(args, study, resources)  # a dry run needs no sbatch
    except StudyError as error:
        print(f"study: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = Path(args.out or Path("reports") / study.name)
    print(f"study {study.name} ({study.path}): {len(study.variants)} variant(s) x {len(seeds)} seed(s) "
          f"of {study.config}", flush=True)
    if args.dry_run:
        print_plan(study, runs, extra, args.force, out, resources)
        return 0
    with sigterm_as_interrupt():
        try:
            return train_and_report(study, runs, extra, args.force, out, launcher)
        except StudyError as error:  # SLURM refused a job
            print(f"study: error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print("study: interrupted; rerun the same command to continue (finished runs are skipped, "
                  "interrupted ones resume from last.ckpt)", file=sys.stderr)
            return EXIT_INTERRUPTED

