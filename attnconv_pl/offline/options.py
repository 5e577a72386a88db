"""``probe.py``'s command line (jsonargparse, as ``train.py``'s): its own options, and a section of
options per settings dataclass, ``--probing.<field>`` (:class:`~attnconv_pl.analyses.session.ProbingSettings`)
and ``--<analysis>.<field>`` for every analysis of :data:`~attnconv_pl.analyses.ANALYSES`, generated from
the dataclass (type, help from its docstring's ``Args:``). A setting left out is not in the parsed
namespace: the run's own value is used. ``--config FILE.yaml`` holds any of these, ``--print_config``
prints the resolved config.

The spellings of the previous release (``--probe-size``, ``--set A.F=V``, ``--robustness SIGMA...``,
...) still work, each with one deprecation line naming its new spelling (:func:`modern_argv`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import typing
from collections.abc import Sequence
from typing import Any, NoReturn, Optional

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from attnconv_pl.analyses import list_analyses, load_analysis
from attnconv_pl.analyses.base import settings_help
from attnconv_pl.analyses.session import ProbingSettings

PROG = "probe.py"
PROBING = "probing"
"""The section of the settings every analysis shares (:class:`ProbingSettings`)."""
DEFAULT_ANALYSES = ("dynamics", "training_records")
"""What every run of train.py records, the analyses of a ``probe.py`` call that names none."""

RENAMED = {
    "--seed": "--probing.seed", "--batch-size": "--probing.batch_size", "--probe-size": "--probing.probe_size",
    "--representation": "--dynamics.representation", "--project-dim": "--dynamics.project_dim",
    "--max-points": "--dynamics.max_points", "--max-dim": "--dynamics.max_dim",
    "--snapshot-dtype": "--dynamics.snapshot_dtype", "--robustness-size": "--robustness.size",
    "--target-loss": "--training_records.target_loss", "--data-dir": "--data_dir", "--arch-kwargs": "--arch_kwargs",
    "--data-kwargs": "--data_kwargs", "--diagram-epochs": "--diagram_epochs",
}
"""Deprecated spelling -> new spelling of the options whose values stay as they are."""
LISTED = {"--layers": "--dynamics.layers", "--id-methods": "--dynamics.id_methods"}
"""Deprecated options that took several values, now one YAML list."""
SWITCHES = {"--topology": ("--dynamics.topology", "true"), "--no-topology": ("--dynamics.topology", "false"),
            "--capture-inputs": ("--dynamics.capture_inputs", "true"),
            "--no-capture-inputs": ("--dynamics.capture_inputs", "false")}
"""Deprecated on/off flags -> the new option and its value."""


NOISE = re.compile(r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors$|"
                   r"Expected a <class 'NoneType'>$|Given value type: |Given value: NestedArg)")
"""Lines of jsonargparse's messages that say nothing about the mistake (the optional types' alternatives)."""


class ProbeArgumentParser(ArgumentParser):
    """A bad command line prints one ``probe.py: error: ...`` line and exits with status 2."""

    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        print(f"{PROG}: error: {parser_message(message)} (`python probe.py --help` lists every option)",
              file=sys.stderr)
        raise SystemExit(2)


def parser_message(message: str) -> str:
    """A jsonargparse message in one line: ``Parser key "model": Option 'archh' is not accepted``,
    without the lines that only list the alternatives of an optional type."""
    parts = [line.strip().removeprefix("- ").rstrip(":").strip() for line in message.splitlines()]
    parts = [part for part in parts if part and not NOISE.match(part)]
    return parts[0] + (f": {'; '.join(parts[1:])}" if len(parts) > 1 else "") if parts else message


def diagram_epoch(text: Any) -> Any:
    """``--diagram_epochs`` values: ``all`` or an epoch number >= 0."""
    if text == "all":
        return text
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = -1
    if value < 0 or isinstance(text, (bool, float)):
        raise argparse.ArgumentTypeError(f"{text!r} is not an epoch: give epoch numbers >= 0 (e.g. 0 10 30) or all")
    return value


def settings_sections() -> dict[str, type]:
    """``{section: settings dataclass}``: :data:`PROBING` and every analysis, in report order."""
    return {PROBING: ProbingSettings, **{name: load_analysis(name).settings_type for name in list_analyses()}}


def add_settings_section(parser: ArgumentParser, section: str, settings_type: type) -> None:
    """``--<section>.<field>`` for every field of ``settings_type``: its type, help from the
    docstring's ``Args:`` (with the dataclass default), and no default (a field not given is
    absent from the namespace: the run's own value is used)."""
    types, described = typing.get_type_hints(settings_type), settings_help(settings_type)
    group = parser.add_argument_group(f"{section} settings ({settings_type.__name__})",
                                      f"--{section}.FIELD VALUE; a setting not given is the run's own")
    for field in dataclasses.fields(settings_type):
        default = field.default if field.default is not dataclasses.MISSING else None
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        help_text = f"{described.get(field.name, '')} (default {shown})".strip()
        plain = {"metavar": field.name.upper()} if types[field.name] in (int, float, str) else {}
        group.add_argument(f"--{section}.{field.name}", type=types[field.name], default=argparse.SUPPRESS,
                           help=help_text.replace("%", "%%"), **plain)


def build_parser() -> ProbeArgumentParser:
    parser = ProbeArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s PATH [PATH ...] --out DIR [--config FILE.yaml] [--print_config] [--probing.FIELD VALUE ...]\n"
              "       [--ANALYSIS.FIELD VALUE ...] [--analyses NAME ...] [--data SPEC] [--arch NAME] [options]",
        description="Probe saved checkpoints (variance, intrinsic dimension, drift, stability and topology of\n"
                    "each layer) and compare runs side by side in a report with plots.",
        epilog=EPILOG)
    parser.add_argument("--config", action=ActionConfigFile,
                        help="a YAML file of any of these options, e.g. {out: R, probing: {probe_size: 500}}")
    parser.add_argument("paths", metavar="PATH", type=str, nargs="+", help="checkpoint files or run directories")
    parser.add_argument("--out", metavar="DIR", type=str, required=True, help="folder of the report (created)")
    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="SPEC", type=Optional[str], default=None,
                      help="probe on other data: SPLIT (train, val or test of the run's dataset), NAME (another "
                           "dataset: digits, cifar10, cifar100, flowers102; the run's probe split) or NAME:SPLIT. "
                           "Default: the run's own dataset and probe split. Never downloads.")
    data.add_argument("--data_dir", metavar="DIR", type=Optional[str], default=None,
                      help="folder holding the dataset's files (default: the run's)")
    weights = parser.add_argument_group(
        "weights files",
        "A PATH that is a bare state dict (torch.save(model.state_dict(), FILE): .pt, .pth) or a\n"
        ".safetensors file is probed as one checkpoint (epoch 0) of the network --arch builds for the\n"
        "images and classes of --data NAME, on that dataset as its own data. Runs of train.py among the\n"
        "PATHs are probed on their own data, at the SPLIT of --data NAME:SPLIT.")
    weights.add_argument("--arch", metavar="NAME", type=Optional[str], default=None,
                         help="the network of the weights files: a registered model (attention_net, resnet18, ...), "
                              "timm:NAME or package.module:Name (imported: code you trust). Also lets probe.py "
                              "import the network of train.py runs trained with this import path")
    weights.add_argument("--arch_kwargs", metavar="YAML", type=Optional[str], default=None,
                         help="options of that network, e.g. '{depth: 2}'")
    weights.add_argument("--data_kwargs", metavar="YAML", type=Optional[str], default=None,
                         help="options of the --data NAME data module, e.g. '{in_chans: 3, image_size: 32}'")
    report = parser.add_argument_group("runs, report and execution")
    report.add_argument("--analyses", nargs="+", type=str, choices=list_analyses(), metavar="NAME", default=None,
                        help="the analyses to run: " + ", ".join(list_analyses()) + " (default: what every run of "
                             "train.py records, " + " and ".join(DEFAULT_ANALYSES) + ")")
    report.add_argument("--diagram_epochs", type=diagram_epoch, nargs="+", metavar="EPOCH", default=None,
                        help="the epochs whose persistence diagrams the report draws, of those probed with topology: "
                             "EPOCH numbers, or all (default: every one up to 6, else 6 spread evenly from the "
                             "first to the last)")
    report.add_argument("--run_name", type=str, nargs="+", metavar="NAME", default=None,
                        help="labels of the runs in the report, one per run in the order given "
                             "(default <experiment>/<run_id>, or the file name outside a run directory)")
    report.add_argument("--device", type=str, default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    report.add_argument("--wandb", action="store_true",
                        help="also log to W&B: each run's numbers (series, tables, line charts) into its training "
                             "run when its run directory names one (wandb_id), else with the report into a probe "
                             "run (offline unless logged in; `wandb sync` the printed folders)")
    for section, settings_type in settings_sections().items():
        add_settings_section(parser, section, settings_type)
    return parser


EPILOG = """\
PATH is a checkpoint file (runs/<experiment>/<run_id>/checkpoints/epoch=NNN.ckpt or last.ckpt)
or a run directory (runs/<experiment>/<run_id>: all its epoch=NNN.ckpt in epoch order).
Checkpoints of one run directory form one run; drift is measured against the run's preceding
checkpoint and epoch=000.ckpt (captured as references when not probed themselves). Runs with
the same model and dataset (e.g. several seeds) form one group of the comparison figure (mean
and error bars).

Settings: --probing.FIELD (what every analysis shares) and --ANALYSIS.FIELD (one analysis's own)
replace the run's settings (the sections of its config.yaml, as the training callbacks used them,
under the run's precision); a setting not given is the run's. List values are YAML:
--dynamics.layers '[mixer, head]'. Robustness is measured on the run's own data (the val split,
or the SPLIT of --data SPLIT); training records come from each run directory's metrics.csv.

Outputs in DIR: dynamics.csv (run,epoch,layer,metric,value), summary.json, figures/*.png,
report.html (self-contained) and report.md. Tables are rewritten after each run, the figures
and pages at the end; every file is written atomically.

Exit status: 0 on success; 2 for bad input, with one message naming the path or value and
what to do (runs completed before a failing one stay in DIR)."""


def option_values(argv: Sequence[str], start: int) -> list[str]:
    """The values after the option at ``start``: the tokens up to the next ``--`` option."""
    end = start + 1
    while end < len(argv) and not argv[end].startswith("--"):
        end += 1
    return list(argv[start + 1:end])


def modern_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``argv`` with the previous release's spellings replaced by the new ones, and one
    deprecation note per deprecated spelling used (naming its new spelling).

    ``--robustness [SIGMA...]`` adds robustness to the analyses (to ``--analyses`` when given,
    else to :data:`DEFAULT_ANALYSES`), ``--run-name`` given once per run becomes one ``--run_name``.
    """
    modern: list[str] = []
    notes: dict[str, str] = {}
    run_names: list[str] = []
    robustness = False
    index = 0
    while index < len(argv):
        token = argv[index]
        flag, equals, inline = token.partition("=")
        consumed = 1
        if flag in RENAMED:
            modern.append(RENAMED[flag] + equals + inline)
            notes.setdefault(flag, RENAMED[flag])
        elif flag in LISTED and not equals:
            values = option_values(argv, index)
            modern += [LISTED[flag], json.dumps(values)]
            notes.setdefault(flag, f"{LISTED[flag]} '{json.dumps(values)}'")
            consumed += len(values)
        elif token in SWITCHES:
            modern += SWITCHES[token]
            notes.setdefault(token, " ".join(SWITCHES[token]))
        elif flag == "--set":
            assignment = inline if equals else (argv[index + 1] if index + 1 < len(argv) else "")
            target, _, value = assignment.partition("=")
            modern += [f"--{target}", value]
            notes.setdefault(flag, f"--{target} {value} (--ANALYSIS.FIELD VALUE)")
            consumed += 0 if equals else 1
        elif flag == "--run-name":
            run_names.append(inline if equals else (argv[index + 1] if index + 1 < len(argv) else ""))
            notes.setdefault(flag, "--run_name NAME... (one --run_name with every name, in order)")
            consumed += 0 if equals else 1
        elif token == "--robustness":
            robustness = True
            values = option_values(argv, index)
            if values:
                modern += ["--robustness.noise_levels", f"[{', '.join(values)}]"]
            notes.setdefault(token, "--analyses ... robustness --robustness.noise_levels '[SIGMA, ...]'")
            consumed += len(values)
        else:
            modern.append(token)
        index += consumed
    if run_names:
        modern += ["--run_name", *run_names]
    if robustness:
        modern = with_robustness(modern)
    return modern, [f"{PROG}: warning: {old} is deprecated (removed in the next release); use {new}"
                    for old, new in notes.items()]


def with_robustness(argv: list[str]) -> list[str]:
    """``argv`` whose last ``--analyses`` also names robustness, after its other names
    (:data:`DEFAULT_ANALYSES` and robustness when there is no ``--analyses``)."""
    positions = [index for index, token in enumerate(argv) if token == "--analyses"]
    if not positions:
        return [*argv, "--analyses", *DEFAULT_ANALYSES, "robustness"]
    after = positions[-1] + 1 + len(option_values(argv, positions[-1]))
    return [*argv[:after], "robustness", *argv[after:]]


def parse_args(argv: Sequence[str]) -> Namespace:
    """The parsed command line, deprecated spellings included (their notes printed to stderr).

    Raises:
        SystemExit: 2 for a bad command line (one ``probe.py: error:`` line); 0 after ``--help``
            or ``--print_config``.
    """
    modern, notes = modern_argv(argv)
    for note in notes:
        print(note, file=sys.stderr)
    return build_parser().parse_args(modern)


def settings_given(args: Namespace) -> dict[str, dict[str, Any]]:
    """``{section: {field: value}}`` of the settings given (on the command line or in ``--config``),
    for :data:`PROBING` and every analysis; sections with none given are left out."""
    given = {}
    for section in settings_sections():
        values = args.get(section)
        if values:
            given[section] = {key: value for key, value in values.as_dict().items()}
    return given
