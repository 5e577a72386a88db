"""Run a study: every variant of a config for every seed through ``train.py``, then one report.

    python -m attnconv_pl.study --config configs/studies/attention_vs_conv_digits.yaml --seeds 0 1 2
    python -m attnconv_pl.study --config configs/attention_vs_conv_digits.yaml    # the study naming it
    python -m attnconv_pl.study --config configs/studies/NAME.yaml --out reports/NAME -- --trainer.max_epochs 3
    python -m attnconv_pl.study --config configs/studies/NAME.yaml --jobs 2        # two runs at a time
    python -m attnconv_pl.study --config configs/studies/NAME.yaml --launcher slurm --time 24:00:00 \\
        --partition gpu --gpus-per-run 1 --cpus-per-run 8 --mem 32 -- --trainer.accelerator gpu

A study file (``configs/studies/<name>.yaml``) names a ``train.py`` config and its variants, each a
list of ``train.py`` flags added to that config; ``probe`` optionally lists flags of the report's
``probe.py`` call::

    config: ../attention_vs_conv_digits.yaml       # relative to the study file
    variants:
      attention_net: [--model.init_args.arch, attention_net]
      conv_net: [--model.init_args.arch, conv_net]
    probe: [--no-topology]
    slurm: {time: "24:00:00", partition: gpu, gpus_per_run: 1, sbatch: {account: my_lab}}   # optional

Variant ``V`` with seed ``N`` is the run ``<runs_dir>/<name>/V-seedN/``, trained by

    python train.py --config CONFIG VARIANT_FLAGS EXTRA_FLAGS --seed_everything N \\
        --experiment <name> --run_id V-seedN --runs_dir RUNS_DIR --wandb_group <name> --wandb_job_type V

in that order (every variant with the first seed, then with the next one, ...), its output in
``train.log`` of the run directory. ``--launcher local`` (the default) runs them on this
machine, ``--jobs N`` at a time (each on its own GPUs); ``--launcher slurm`` submits one SLURM
job per run through submitit (resources from the flags ``--time``, ``--partition``,
``--gpus-per-run``, ``--cpus-per-run``, ``--mem``, over the study file's ``slurm:``), requeued on
preemption or at its time limit and resumed from ``last.ckpt`` (see ``attnconv_pl/study/launchers.py``);
``--launcher submitit-local`` runs the same jobs through submitit's local executor (processes on this
machine), to try a SLURM study off the cluster. ``--dry-run`` parses every variant's ``train.py``
command line with ``train.py``'s own parser and prints each run's command (with a submitit launcher
also its job's ``#SBATCH`` options; no ``sbatch`` needed), training nothing. While runs train, \
each new epoch of a run prints a line with its validation accuracy (read from
its ``metrics.csv``). A run whose checkpoints reach its ``trainer.max_epochs`` is finished and
skipped (``--force`` trains it again from scratch); one with ``last.ckpt`` short of it resumes
from there; a failed run is reported with its log and the others still run. Then one ``probe.py`` \
call over the finished runs writes the
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

Longer than 400 lines: the study file, run states and the command line are one user-facing
contract documented above; the command line moves to generated options with the other CLIs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from attnconv_pl.errors import ProbeInputError, StudyError
from attnconv_pl.io.run_dir import read_run_config
from attnconv_pl.io.run_lock import RunLockedError, check_run_unlocked
from attnconv_pl.offline.checkpoints import epoch_checkpoints
from attnconv_pl.study import jobs, launchers
from attnconv_pl.study.child_process import EXIT_INTERRUPTED, run_child, sigterm_as_interrupt
from attnconv_pl.study.jobs import LOG_NAME, TrainJob, shown
from attnconv_pl.study.launchers import SLURM_KEYS, run_jobs, slurm_resources

REPO = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO / "train.py"
PROBE_SCRIPT = REPO / "probe.py"
STUDIES_FOLDER = "studies"
"""Study files of the configs in a folder live in its ``studies/`` subfolder."""
STUDY_KEYS = ("config", "variants", "probe", "slurm")
RUNNER_FLAGS = ("--experiment", "--run_id", "--runs_dir", "--seed_everything", "--ckpt_path", "--wandb_group",
                "--wandb_job_type")
"""``train.py`` flags the runner sets itself for every run (not allowed after ``--``)."""
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
SUBMITIT_CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}
"""submitit's executor of each submitit launcher: SLURM, or the same jobs as processes on this machine."""

@dataclass(frozen=True)
class Study:
    """A study file: a ``train.py`` config and its variants.

    Attributes:
        name: the study file's stem; the experiment name of its runs and the report's folder name.
        path: the study file.
        config: the ``train.py`` config every variant starts from.
        variants: ``{variant name: train.py flags}`` in file order.
        probe_flags: extra flags of the ``probe.py`` call.
        slurm: the ``slurm:`` mapping, resources of ``--launcher slurm`` (``launchers.SLURM_KEYS``).
    """

    name: str
    path: Path
    config: Path
    variants: dict[str, tuple[str, ...]]
    probe_flags: tuple[str, ...] = ()
    slurm: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyRun:
    """One variant trained with one seed, in ``<runs_dir>/<study>/<variant>-seed<seed>/``."""

    variant: str
    seed: int
    run_dir: Path

    @property
    def run_id(self) -> str:
        return self.run_dir.name


class StudyFileLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s YAML, except that ``12:00:00`` stays a string (SLURM's time format), not
    the base-60 integer 43200 of YAML 1.1."""


StudyFileLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:int"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
StudyFileLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"))


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``.

    Raises:
        StudyError: the file is missing, not YAML, or not a mapping.
    """
    if not path.is_file():
        raise StudyError(f"{path} does not exist; give a study file such as "
                         "configs/studies/attention_vs_conv_digits.yaml")
    try:
        content = yaml.load(path.read_text(), Loader=StudyFileLoader)
    except yaml.YAMLError as error:
        raise StudyError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(content, dict):
        raise StudyError(f"{path} is not a YAML mapping; a study file has the keys {', '.join(STUDY_KEYS)}")
    return content


def flag_list(value: Any, where: str) -> tuple[str, ...]:
    """Command-line tokens from a YAML list of scalars (numbers and booleans written as on a command line).

    Raises:
        StudyError: ``value`` is not a list of scalars.
    """
    if not isinstance(value, list) or not all(isinstance(item, (str, int, float, bool)) for item in value):
        raise StudyError(f"{where} must be a list of command-line flags and values, e.g. "
                         f"[--model.init_args.arch, conv_net]; got {value!r}")
    return tuple(str(item).lower() if isinstance(item, bool) else str(item) for item in value)


def load_study(path: Path) -> Study:
    """Read and check a study file (see the module docstring for its keys).

    Raises:
        StudyError: a key is missing or unknown, the config does not exist, a variant name is not
            usable in a run id, or flags are not a list.
    """
    content = read_yaml_mapping(path)
    unknown = sorted(set(content) - set(STUDY_KEYS))
    missing = [key for key in ("config", "variants") if key not in content]
    if unknown or missing:
        problem = f"unknown key(s) {', '.join(unknown)}" if unknown else f"no {' and no '.join(missing)}"
        hint = " (it looks like a train.py config: give its study file instead)" if "trainer" in content else ""
        raise StudyError(f"{path} has {problem}{hint}; a study file has `config:` (a train.py config), "
                         "`variants:` ({name: [train.py flags]}) and optionally `probe:` ([probe.py flags]) "
                         f"and `slurm:` ({{{', '.join(SLURM_KEYS)}}})")
    config = Path(os.path.normpath(path.parent / str(content["config"])))
    if not config.is_file():
        raise StudyError(f"{path}: config {content['config']} does not exist ({config.resolve()}); "
                         "paths in a study file are relative to the study file")
    variants = content["variants"]
    if not isinstance(variants, dict) or not variants:
        raise StudyError(f"{path}: variants must be a mapping {{name: [train.py flags]}} with at least one entry")
    for name in variants:
        if not VARIANT_NAME.match(str(name)):
            raise StudyError(f"{path}: variant name {name!r} cannot be part of a run id; use letters, digits, "
                             "'_', '.' and '-'")
    slurm = content.get("slurm") or {}
    if not isinstance(slurm, dict):
        raise StudyError(f"{path}: slurm must be a mapping of job resources ({', '.join(SLURM_KEYS)}); got {slurm!r}")
    return Study(
        name=path.stem, path=path, config=config,
        variants={str(name): flag_list(flags or [], f"{path}: variant {name}") for name, flags in variants.items()},
        probe_flags=flag_list(content.get("probe") or [], f"{path}: probe"), slurm=slurm,
    )


def resolve_study(path: Path) -> Study:
    """The study of ``path``: a study file, or a ``train.py`` config named by exactly one study
    file in the ``studies/`` folder beside it.

    Raises:
        StudyError: the file is neither, or several study files name the config.
    """
    content = read_yaml_mapping(path)
    is_train_config = "trainer" in content and "variants" not in content
    if not is_train_config:
        return load_study(path)
    config = path.resolve()
    folder = path.parent / STUDIES_FOLDER
    naming = [candidate for candidate in sorted(folder.glob("*.yaml"))
              if (candidate.parent / str(read_yaml_mapping(candidate).get("config", ""))).resolve() == config]
    if len(naming) != 1:
        found = f"several study files name it: {', '.join(map(str, naming))}" if naming else \
            f"no study file in {folder}/ names it"
        raise StudyError(f"{path} is a train.py config and {found}; give a study file with --config, or write one "
                         f"({folder}/<name>.yaml with `config: ../{path.name}` and `variants:`)")
    return load_study(naming[0])


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


PARSER_NOISE = re.compile(r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors$|"
                          r"Expected a <class 'NoneType'>$|Given value type: |Given value: NestedArg)")
"""Lines of jsonargparse's messages that say nothing about the mistake (the optional types' alternatives)."""


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


def parser_message(message: str) -> str:
    """A jsonargparse message in one line: ``Parser key "model": Option 'archh' is not accepted``."""
    parts = [line.strip().removeprefix("- ").rstrip(":").strip() for line in message.splitlines()]
    parts = [part for part in parts if part and not PARSER_NOISE.match(part)]
    return parts[0] + (f": {'; '.join(parts[1:])}" if len(parts) > 1 else "") if parts else message


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
    return TrainJob(label=label, run_dir=run.run_dir, script=TRAIN_SCRIPT, args=train_args(study, run, extra))


def probe_args(study: Study, run_dirs: Sequence[Path], out: Path) -> list[str]:
    """The ``probe.py`` arguments of the report over ``run_dirs``."""
    return [*map(str, run_dirs), "--out", str(out), *study.probe_flags]


def run_probe(args: Sequence[str]) -> int:
    """Run ``python probe.py ARGS`` (see ``run_child``), output to this process's; its exit status."""
    return run_child([sys.executable, str(PROBE_SCRIPT), *args], jobs.STOP_GRACE_S, env=jobs.child_env())


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
    print(f"report of {len(finished)} run(s): {shown(PROBE_SCRIPT, probe_args(study, finished, out))}", flush=True)
    status = run_probe(probe_args(study, finished, out))
    if status != 0:
        print(f"study: probe.py failed (exit status {status}); see its message above", file=sys.stderr)
        return EXIT_FAILED
    print(f"report: {out / 'report.html'}")
    return EXIT_FAILED if outcomes["failed"] else 0


SLURM_FLAGS = {"partition": "--partition", "time": "--time", "gpus_per_run": "--gpus-per-run",
               "cpus_per_run": "--cpus-per-run", "mem_gb": "--mem"}
"""Study-file ``slurm:`` key -> the flag that overrides it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m attnconv_pl.study", formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s --config STUDY [--seeds N ...] [--out DIR] [--runs_dir DIR] [--force] [--dry-run] "
              "[--launcher local [--jobs N] | --launcher slurm|submitit-local --time T [--partition P] ...] "
              "[-- train.py flags ...]",
        description="Train every variant of a study for every seed with train.py (on this machine, N runs at a\n"
                    "time, or as SLURM jobs), then compare them in one probe.py report.",
        epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--config", required=True, type=Path, metavar="STUDY",
                        help="a study file (configs/studies/NAME.yaml), or a train.py config that one study "
                             "file in the studies/ folder beside it names")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="N",
                        help="seeds of each variant (--seed_everything); default 0 1 2")
    parser.add_argument("--out", type=Path, metavar="DIR", help="folder of the report (default reports/<study>)")
    parser.add_argument("--runs_dir", type=Path, default=Path("runs"), metavar="DIR",
                        help="root of the run directories (default runs)")
    parser.add_argument("--force", action="store_true",
                        help="train every run again from scratch, finished ones too (deletes their run directories)")
    parser.add_argument("--dry-run", action="store_true",
                        help="check every variant's train.py flags, print each run's state and commands (and "
                             "#SBATCH options), run nothing")
    parser.add_argument("--launcher", choices=("local", *SUBMITIT_CLUSTERS), default="local",
                        help="local: train.py children of this process (default); slurm: one SLURM job per run "
                             "through submitit (pip install 'attnconv-pl[slurm]'), requeued on preemption; "
                             "submitit-local: the same jobs through submitit's local executor (processes on this "
                             "machine, time limit and requeue included), to try a SLURM study off the cluster")
    local = parser.add_argument_group("--launcher local")
    local.add_argument("--jobs", type=int, metavar="N",
                       help="runs at a time (default 1); with CUDA GPUs each gets its own equal share of the "
                            "visible ones (CUDA_VISIBLE_DEVICES), or one GPU shared round-robin when fewer")
    slurm = parser.add_argument_group("--launcher slurm or submitit-local (each overrides the study file's slurm: key)")
    slurm.add_argument("--time", metavar="T", help="time limit of a run's job: minutes or [D-]HH:MM:SS (required "
                                                  "here or in the study file); a longer run is requeued and resumes")
    slurm.add_argument("--partition", metavar="NAME", help="SLURM partition (default: the cluster's)")
    slurm.add_argument("--gpus-per-run", type=int, metavar="N", help="GPUs of a run's job, one task each (default 0)")
    slurm.add_argument("--cpus-per-run", type=int, metavar="N",
                       help="CPU cores of a run's job (default: the cluster's)")
    slurm.add_argument("--mem", type=float, dest="mem_gb", metavar="GB",
                       help="memory of a run's job in GB (default: the cluster's)")
    return parser


def job_resources(args: argparse.Namespace, study: Study) -> Optional[launchers.SlurmResources]:
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


def make_launcher(args: argparse.Namespace, study: Study, resources: Optional[launchers.SlurmResources]) -> Any:
    """The launcher the flags ask for, with the job ``resources`` of :func:`job_resources`.

    Raises:
        StudyError: submitit missing, or no ``sbatch`` here for ``--launcher slurm``.
    """
    if resources is None:
        return launchers.LocalLauncher(args.jobs or 1)
    return launchers.SlurmLauncher(resources, study.name, cluster=SUBMITIT_CLUSTERS[args.launcher])


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The runner's own arguments and the ``train.py`` flags after the first ``--``."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


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
            print(f"  {shown(TRAIN_SCRIPT, job.argv() if state == 'resume' else job.args)}")
            if resources is not None:
                print(f"  sbatch {' '.join(resources.sbatch_options(f'{study.name}/{run.run_id}'))} "
                      f"(job files in {run.run_dir / launchers.SUBMITIT_FOLDER})")
    print(f"report: {shown(PROBE_SCRIPT, probe_args(study, [run.run_dir for run in runs], out))}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    own, extra = split_extra(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    seeds = list(dict.fromkeys(args.seeds))
    try:
        study = resolve_study(args.config)
        check_extra_flags(extra)
        resources = job_resources(args, study)
        runs = plan_runs(study, seeds, args.runs_dir)
        check_train_args(study, runs, extra)
        launcher = None if args.dry_run else make_launcher(args, study, resources)  # a dry run needs no sbatch
    except StudyError as error:
        print(f"study: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = args.out or Path("reports") / study.name
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

