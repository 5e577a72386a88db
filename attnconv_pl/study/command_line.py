"""The study runner's command line (jsonargparse, as ``train.py``'s and ``probe.py``'s): underscore
spellings (``--runs_dir``, ``--dry_run``, ``--gpus_per_run``), the ``train.py`` flags after ``--``.
The dashed spellings of the previous release still work, each with one deprecation line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn, Optional

from jsonargparse import ArgumentParser, Namespace

from attnconv_pl.offline.options import parser_message

PROG = "python -m attnconv_pl.study"
SUBMITIT_CLUSTERS = {"slurm": "slurm", "submitit-local": "local"}
"""submitit's executor of each submitit launcher: SLURM, or the same jobs as processes on this machine."""
SLURM_FLAGS = {"partition": "--partition", "time": "--time", "gpus_per_run": "--gpus_per_run",
               "cpus_per_run": "--cpus_per_run", "mem_gb": "--mem"}
"""Study-file ``slurm:`` key -> the flag that overrides it."""
RENAMED = {"--dry-run": "--dry_run", "--gpus-per-run": "--gpus_per_run", "--cpus-per-run": "--cpus_per_run"}
"""Deprecated spelling -> new spelling."""


class StudyArgumentParser(ArgumentParser):
    """A bad command line prints one ``study: error: ...`` line and exits with status 2."""

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        print(f"study: error: {parser_message(message)} (`{PROG} --help` lists every option)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(epilog: str = "") -> StudyArgumentParser:
    parser = StudyArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s --config STUDY [--seeds N ...] [--out DIR] [--runs_dir DIR] [--force] [--dry_run] "
              "[--launcher local [--jobs N] | --launcher slurm|submitit-local --time T [--partition P] ...] "
              "[-- train.py flags ...]",
        description="Train every variant of a study for every seed with train.py (on this machine, N runs at a\n"
                    "time, or as SLURM jobs), then compare them in one probe.py report.",
        epilog=epilog)
    parser.add_argument("--config", required=True, type=str, metavar="STUDY",
                        help="a study file (configs/studies/NAME.yaml), or a train.py config that one study "
                             "file in the studies/ folder beside it names")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], metavar="N",
                        help="seeds of each variant (--seed_everything); default 0 1 2")
    parser.add_argument("--out", type=Optional[str], default=None, metavar="DIR",
                        help="folder of the report (default reports/<study>)")
    parser.add_argument("--runs_dir", type=str, default="runs", metavar="DIR",
                        help="root of the run directories (default runs)")
    parser.add_argument("--force", action="store_true",
                        help="train every run again from scratch, finished ones too (deletes their run directories)")
    parser.add_argument("--dry_run", action="store_true",
                        help="check every variant's train.py flags, print each run's state and commands (and "
                             "#SBATCH options), run nothing")
    parser.add_argument("--launcher", type=str, choices=("local", *SUBMITIT_CLUSTERS), default="local",
                        help="local: train.py children of this process (default); slurm: one SLURM job per run "
                             "through submitit (pip install 'attnconv-pl[slurm]'), requeued on preemption; "
                             "submitit-local: the same jobs through submitit's local executor (processes on this "
                             "machine, time limit and requeue included), to try a SLURM study off the cluster")
    local = parser.add_argument_group("--launcher local")
    local.add_argument("--jobs", type=Optional[int], default=None, metavar="N",
                       help="runs at a time (default 1); with CUDA GPUs each gets its own equal share of the "
                            "visible ones (CUDA_VISIBLE_DEVICES), or one GPU shared round-robin when fewer")
    slurm = parser.add_argument_group("--launcher slurm or submitit-local (each overrides the study file's slurm: key)")
    slurm.add_argument("--time", type=Optional[str], default=None, metavar="T",
                       help="time limit of a run's job: minutes or [D-]HH:MM:SS (required here or in the study "
                            "file); a longer run is requeued and resumes")
    slurm.add_argument("--partition", type=Optional[str], default=None, metavar="NAME",
                       help="SLURM partition (default: the cluster's)")
    slurm.add_argument("--gpus_per_run", type=Optional[int], default=None, metavar="N",
                       help="GPUs of a run's job, one task each (default 0)")
    slurm.add_argument("--cpus_per_run", type=Optional[int], default=None, metavar="N",
                       help="CPU cores of a run's job (default: the cluster's)")
    slurm.add_argument("--mem", type=Optional[float], default=None, dest="mem_gb", metavar="GB",
                       help="memory of a run's job in GB (default: the cluster's)")
    return parser


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The runner's own arguments and the ``train.py`` flags after the first ``--``."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def modern_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The runner's own arguments with the deprecated spellings (:data:`RENAMED`) replaced, and
    one deprecation note per deprecated spelling used."""
    modern, notes = [], {}
    for token in argv:
        flag, equals, value = token.partition("=")
        if flag in RENAMED:
            notes.setdefault(flag, RENAMED[flag])
            token = RENAMED[flag] + equals + value
        modern.append(token)
    return modern, [f"study: warning: {old} is deprecated (removed in the next release); use {new}"
                    for old, new in notes.items()]


def parse_command_line(argv: Sequence[str], epilog: str = "") -> tuple[Namespace, list[str]]:
    """The runner's options and the ``train.py`` flags after ``--`` (deprecation notes printed to stderr).

    Raises:
        SystemExit: 2 for a bad command line (one ``study: error:`` line); 0 after ``--help``.
    """
    own, extra = split_extra(argv)
    modern, notes = modern_argv(own)
    for note in notes:
        print(note, file=sys.stderr)
    return build_parser(epilog).parse_args(modern), extra
