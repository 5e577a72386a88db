"""Probe saved checkpoints and compare runs side by side in a report with plots.

    python probe.py runs/default/RUN --out reports/RUN               # a run's checkpoints, its own settings
    python probe.py runs/attn/s0 runs/attn/s1 runs/conv/s0 runs/conv/s1 --out reports/attn-vs-conv
    python probe.py runs/default/RUN/checkpoints/epoch=003.ckpt --out R --data test --layers "mixer*"
    python probe.py runs/metric_attention_digits/* --out R --robustness        # + accuracy under input noise
    python probe.py my_net.safetensors --arch timm:resnet18 --data cifar10 --out R   # a bare state dict

Each PATH is a checkpoint file or a run directory (all its ``checkpoints/epoch=NNN.ckpt``). The
probe settings default to the run's own (its ``config.yaml``), so with no options the numbers
equal those the training callback logged. ``python probe.py --help`` lists every option.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from attnconv_pl.analyses import list_analyses
from attnconv_pl.analyses.robustness import DEFAULT_NOISE_LEVELS, RobustnessSettings, check_noise_levels
from attnconv_pl.analyses.training_records import DEFAULT_TARGET_LOSS, TrainingRecordsSettings
from attnconv_pl.errors import ConfigError, ProbeInputError, check_creatable_dir
from attnconv_pl.offline.checkpoints import RunCheckpoints, collect_runs

EXIT_BAD_INPUT = 2
SETTING_OPTIONS = ("layers", "probe_size", "representation", "project_dim", "id_methods", "topology",
                   "capture_inputs", "max_points", "max_dim", "seed", "snapshot_dtype", "batch_size")
"""``DynamicsSettings`` fields offered as options (they override the run's config when given)."""
DEFAULT_ROBUSTNESS_SIZE = RobustnessSettings.size


def noise_level(text: str) -> float:
    """``--robustness`` values: noise standard deviations, finite and >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a noise level (a number >= 0, e.g. 0.1); give the PATHs before --robustness") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"{text} is not a noise level: levels are standard deviations, finite and >= 0 (e.g. 0 0.1 0.5)")
    return value


def diagram_epoch(text: str):
    """``--diagram-epochs`` values: ``all`` or an epoch number >= 0."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an epoch: give epoch numbers >= 0 (e.g. 0 10 30) or all")
    return value


def checked_by(settings_type: type, field: str, convert: type, expected: str):
    """An argparse type: ``convert`` the text, then let ``settings_type(**{field: value})`` judge
    it, so the rule and its message are the dataclass's own."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {expected}") from None
        try:
            settings_type(**{field: value})
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value

    return parse


input_count = checked_by(RobustnessSettings, "size", int, "a count of inputs (an integer >= 2)")
"""``--robustness-size``: a count of inputs, at least 2."""
target_loss = checked_by(TrainingRecordsSettings, "target_loss", float, "a loss (a number > 0, e.g. 1.0)")
"""``--target-loss``: a mean training loss, finite and > 0."""


def add_settings_options(group, names: Sequence[str]) -> None:
    """``--<name>`` options for the ``DynamicsSettings`` fields ``names``: type, choices and help
    from the dataclass (its field types and the ``Args:`` of its docstring), default None (the
    run's own setting)."""
    import typing

    from attnconv_pl.analyses.base import settings_help
    from attnconv_pl.analyses.dynamics import DynamicsSettings

    types, described = typing.get_type_hints(DynamicsSettings), settings_help(DynamicsSettings)
    defaults = {field.name: field.default for field in dataclasses.fields(DynamicsSettings)}
    for name in names:
        annotation = typing.Optional[list[str]] if types[name] == tuple[str, ...] else types[name]
        arguments = typing.get_args(annotation)
        default = defaults[name]
        shown = " ".join(default) if isinstance(default, tuple) else default
        help_text = described[name] + ("" if default is None else f" (default {shown})")
        kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%")}
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = arguments
        elif annotation == typing.Optional[list[str]]:
            kwargs.update(nargs="+", metavar=name.upper().removesuffix("S"))
        else:
            kwargs.update(type=annotation, metavar=name.upper())
        group.add_argument(f"--{name.replace('_', '-')}", **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probe.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Probe saved checkpoints (variance, intrinsic dimension, drift, stability and topology of\n"
                    "each layer) and compare runs side by side in a report with plots.",
        epilog="""\
PATH is a checkpoint file (runs/<experiment>/<run_id>/checkpoints/epoch=NNN.ckpt or last.ckpt)
or a run directory (runs/<experiment>/<run_id>: all its epoch=NNN.ckpt in epoch order).
Checkpoints of one run directory form one run; drift is measured against the run's preceding
checkpoint and epoch=000.ckpt (captured as references when not probed themselves). Runs with
the same model and dataset (e.g. several seeds) form one group of the comparison figure (mean
and error bars).

Outputs in DIR: dynamics.csv (run,epoch,layer,metric,value), summary.json, figures/*.png,
report.html (self-contained) and report.md. A run directory with a metrics.csv (every run of
train.py has one) adds its training records (best validation accuracy, epochs to the target
loss) to the summary and the report; --robustness adds accuracy under input noise. Tables are
rewritten after each run, the figures and pages at the end; every file is written atomically.

Exit status: 0 on success; 2 for bad input, with one message naming the path or value and
what to do (runs completed before a failing one stay in DIR).""")
    parser.add_argument("paths", metavar="PATH", nargs="+", help="checkpoint files or run directories")
    parser.add_argument("--out", metavar="DIR", required=True, type=Path, help="folder of the report (created)")
    settings = parser.add_argument_group(
        "probe settings",
        "Default: the run's own (dynamics section of its config.yaml), as the training callback\n"
        "used them, under the run's precision (16-mixed / bf16-mixed autocast); for a checkpoint\n"
        "outside a run directory, the layers and seed saved in it.")
    add_settings_options(settings, SETTING_OPTIONS)
    data = parser.add_argument_group("data")
    data.add_argument("--data", metavar="SPEC",
                      help="probe on other data: SPLIT (train, val or test of the run's dataset), NAME (another "
                           "dataset: digits, cifar10, cifar100, flowers102; the run's probe split) or NAME:SPLIT. "
                           "Default: the run's own dataset and probe split. Never downloads.")
    data.add_argument("--data-dir", metavar="DIR", help="folder holding the dataset's files (default: the run's)")
    weights = parser.add_argument_group(
        "weights files",
        "A PATH that is a bare state dict (torch.save(model.state_dict(), FILE): .pt, .pth) or a\n"
        ".safetensors file is probed as one checkpoint (epoch 0) of the network --arch builds for the\n"
        "images and classes of --data NAME, on that dataset as its own data. Runs of train.py among the\n"
        "PATHs are probed on their own data, at the SPLIT of --data NAME:SPLIT.")
    weights.add_argument("--arch", metavar="NAME",
                         help="the network of the weights files: a registered model (attention_net, resnet18, ...), "
                              "timm:NAME or package.module:Name (imported: code you trust). Also lets probe.py "
                              "import the network of train.py runs trained with this import path")
    weights.add_argument("--arch-kwargs", metavar="YAML", help="options of that network, e.g. '{depth: 2}'")
    weights.add_argument("--data-kwargs", metavar="YAML",
                         help="options of the --data NAME data module, e.g. '{in_chans: 3, image_size: 32}'")
    records = parser.add_argument_group(
        "training records and robustness",
        "Training records come from each run directory's metrics.csv; robustness is measured on\n"
        "the run's own data (the val split, or the SPLIT of --data SPLIT), inputs and noise drawn\n"
        "by the probe seed (--seed).")
    records.add_argument("--target-loss", type=target_loss, default=DEFAULT_TARGET_LOSS, metavar="T",
                         help="records: the first epoch whose mean training loss is <= T "
                              f"(default {DEFAULT_TARGET_LOSS:g}, cross-entropy in nats)")
    records.add_argument("--robustness", type=noise_level, nargs="*", metavar="SIGMA",
                         help="also measure each checkpoint's accuracy with Gaussian noise of standard deviation "
                              "SIGMA added to its normalised inputs (default levels: "
                              f"{' '.join(f'{level:g}' for level in DEFAULT_NOISE_LEVELS)})")
    records.add_argument("--robustness-size", type=input_count, default=DEFAULT_ROBUSTNESS_SIZE, metavar="N",
                         help=f"inputs of the robustness evaluation (default {DEFAULT_ROBUSTNESS_SIZE}; "
                              "all of the split when smaller)")
    report = parser.add_argument_group("report")
    report.add_argument("--diagram-epochs", type=diagram_epoch, nargs="+", metavar="EPOCH",
                        help="the epochs whose persistence diagrams the report draws, of those probed with topology: "
                             "EPOCH numbers, or all (default: every one up to 6, else 6 spread evenly from the "
                             "first to the last)")
    other = parser.add_argument_group("runs and execution")
    other.add_argument("--set", action="append", default=[], metavar="ANALYSIS.FIELD=VALUE", dest="settings",
                       help="set one field of an analysis's settings (VALUE in YAML syntax), e.g. "
                            "--set single_node.threshold=0.5 or --set stiffness.jacobian_inputs=4; repeatable; "
                            "the fields are those of the analysis's config section (see README)")
    other.add_argument("--analyses", nargs="+", choices=list_analyses(), metavar="NAME",
                       help="the analyses to run: " + ", ".join(list_analyses()) + " (default: what every run of "
                            "train.py records, dynamics and training_records; robustness too when --robustness is "
                            "given, which also sets its noise levels)")
    other.add_argument("--run-name", action="append", metavar="NAME",
                       help="label of a run in the report, once per run in the order given "
                            "(default <experiment>/<run_id>, or the file name outside a run directory)")
    other.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    other.add_argument("--wandb", action="store_true",
                       help="also log to W&B: each run's numbers (series, tables, line charts) into its training "
                            "run when its run directory names one (wandb_id), else with the report into a probe "
                            "run (offline unless logged in; `wandb sync` the printed folders)")
    return parser


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The probe settings given on the command line, as ``DynamicsSettings`` fields."""
    return {name: getattr(args, name) for name in SETTING_OPTIONS if getattr(args, name) is not None}


def settings_overrides(assignments: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set ANALYSIS.FIELD=VALUE`` assignments as ``{analysis: {field: value}}`` (VALUE parsed
    as YAML: ``0.5``, ``true``, ``[a, b]``); the values are checked when the settings are built.

    Raises:
        ProbeInputError: an assignment is malformed, or names an unknown analysis or field.
    """
    import yaml

    from attnconv_pl.analyses import load_analysis

    overrides: dict[str, dict[str, Any]] = {}
    for assignment in assignments:
        target, equals, text = assignment.partition("=")
        name, dot, field = target.partition(".")
        if not (equals and dot and field):
            raise ProbeInputError(f"--set {assignment}: give ANALYSIS.FIELD=VALUE, "
                                  "e.g. --set single_node.threshold=0.5")
        if name not in list_analyses():
            raise ProbeInputError(f"--set {assignment}: unknown analysis {name!r}; analyses are: "
                                  f"{', '.join(list_analyses())}")
        fields = list(load_analysis(name).settings_type.__dataclass_fields__)
        if field not in fields:
            raise ProbeInputError(f"--set {assignment}: {name} has no setting {field!r}; its settings are: "
                                  f"{', '.join(fields)}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ProbeInputError(f"--set {assignment}: VALUE is not YAML ({error})") from None
        overrides.setdefault(name, {})[field] = tuple(value) if isinstance(value, list) else value
    return overrides


def run_labels(runs: list[RunCheckpoints], names: Optional[list[str]]) -> list[str]:
    """One distinct label per run: ``--run-name`` values, else the run names (``#2``... on clashes)."""
    if names is not None:
        if len(names) != len(runs):
            raise ProbeInputError(
                f"--run-name was given {len(names)} time(s) for {len(runs)} run(s) "
                f"({', '.join(run.name for run in runs)}); give it once per run, in order")
        if len(set(names)) != len(names):
            raise ProbeInputError(f"--run-name values must differ, got {names}")
        return list(names)
    labels: list[str] = []
    for run in runs:
        label = run.name
        labels.append(label if label not in labels else f"{label}#{labels.count(label) + 1}")
    return labels


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    completed: list = []
    try:
        check_creatable_dir(args.out, "--out", "the folder of the report")
        runs = collect_runs(args.paths)
        labels = run_labels(runs, args.run_name)
        with tempfile.TemporaryDirectory(prefix="probe-weights-") as folder:
            runs = weights_as_checkpoints(args, runs, Path(folder))
            probe_and_report(args, runs, labels, completed, command=shlex.join(["python", "probe.py", *argv]))
    except ConfigError as error:
        print(f"probe.py: error: {error}", file=sys.stderr)
        if completed:
            print(f"probe.py: {args.out}/dynamics.csv and summary.json hold the runs completed before: "
                  f"{', '.join(run.label for run in completed)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def weights_as_checkpoints(args: argparse.Namespace, runs: list[RunCheckpoints], folder: Path) -> list[RunCheckpoints]:
    """``runs`` with each bare weights file turned into a checkpoint in ``folder`` (the network of
    ``--arch`` for ``--data``; ``runs`` as they are without ``--arch``). When there is one,
    ``args.data`` keeps only its split: the weights' dataset is their own data, and train.py runs
    are probed on theirs.

    Raises:
        ConfigError: bad --arch-kwargs / --data-kwargs, or a file that cannot be probed.
    """
    if args.arch is None:
        if args.arch_kwargs is not None or args.data_kwargs is not None:
            raise ConfigError("--arch-kwargs and --data-kwargs describe weights files: give --arch NAME too")
        return runs
    from attnconv_pl.offline.data_choice import DataChoice
    from attnconv_pl.offline.weights import WeightsModel, parse_mapping, weights_runs

    choice = DataChoice.parse(args.data, args.data_dir)
    model = WeightsModel(args.arch, choice, parse_mapping(args.arch_kwargs, "--arch-kwargs"),
                         parse_mapping(args.data_kwargs, "--data-kwargs"))
    converted = weights_runs(runs, model, folder)
    if converted != runs and choice.dataset is not None:
        args.data = choice.split
    return converted


def probe_and_report(args: argparse.Namespace, runs: list[RunCheckpoints], labels: list[str], completed: list,
                     command: str) -> None:
    """Probe every run, rewrite the tables after each, then write the report (and log it).

    ``completed`` receives each :class:`~attnconv_pl.reports.records.ProbedRun` as it is done.
    """
    from attnconv_pl.analyses.session import SHARED_FIELDS
    from attnconv_pl.io.console import Progress
    from attnconv_pl.offline.assemble import group_key, group_labels, probed_run, unreachable_target
    from attnconv_pl.offline.data_choice import DataChoice, resolve_device
    from attnconv_pl.offline.prober import RunProber
    from attnconv_pl.reports.report import write_report, write_tables

    choice = DataChoice.parse(args.data, args.data_dir)
    analyses = selected_analyses(args)
    overrides = settings_overrides(args.settings)
    probing = {name: value for name, value in setting_overrides(args).items() if name in SHARED_FIELDS}
    overrides["dynamics"] = {**overrides.get("dynamics", {}),
                             **{name: value for name, value in setting_overrides(args).items() if name not in probing}}
    if "robustness" in analyses:
        overrides["robustness"] = {**dataclasses.asdict(robustness_request(args, choice)),
                                   **overrides.get("robustness", {})}
    overrides["training_records"] = {"target_loss": args.target_loss, **overrides.get("training_records", {})}
    if "single_node" in analyses and choice.dataset is not None:
        raise ProbeInputError(f"--analyses single_node reads the run's own labels, but --data {args.data} names a "
                              "dataset; give only a split (--data val) or leave --data out")
    checkpoint_analyses = {name: overrides.get(name, {}) for name in checkpoint_analysis_names(analyses)}
    device = resolve_device(args.device)
    context = {"command": command, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "device": str(device)}
    probe_sets: dict = {}
    records, keys = [], []
    with Progress("probing", total=sum(len(run.checkpoints) for run in runs), unit="checkpoint") as progress:
        for run, label in zip(runs, labels):
            progress.step(f"{label}: loading data and model")
            prober = RunProber.open(run, analyses=checkpoint_analyses, probing=probing,
                                    choice=choice, device=device, probe_sets=probe_sets, trusted_arch=args.arch)
            run_outcomes = []
            for path in run.checkpoints:
                where = f"{label}: {path.name} ({len(prober.layers)} layers)"
                run_outcomes.append(prober.probe(path, on_step=lambda name, where=where: progress.step(
                    f"{where}, {name}")))
                progress.update()
            record = probed_run(prober, run_outcomes, label)
            record, absent = drawn_diagrams(record, args.diagram_epochs)
            for warning in filter(None, (unreachable_target(record), absent)):
                progress.write(f"probe.py: warning: {warning}")
            records.append(record)
            keys.append(group_key(prober))
            del prober, run_outcomes  # the model and the snapshots drift was measured against
            completed[:] = [dataclasses.replace(record, group=group)
                            for record, group in zip(records, group_labels(keys))]
            write_tables(args.out, completed, context)
    figures = write_report(args.out, completed, context, progress=True)
    print(f"report:  {args.out / 'report.html'} ({len(figures)} figures in {args.out / 'figures'}; "
          f"also report.md)\nnumbers: {args.out / 'dynamics.csv'}, {args.out / 'summary.json'}")
    if args.wandb:
        from attnconv_pl.reports.wandb_report import log_report

        for wandb_dir in log_report(args.out, completed, figures, name=f"probe/{args.out.name}"):
            print(f"W&B:     {wandb_dir}" + (f"\n  upload with: wandb sync {wandb_dir}"
                                             if wandb_dir.name.startswith("offline-") else ""))


def drawn_diagrams(record, chosen: Optional[list]) -> tuple[Any, Optional[str]]:
    """``record`` holding the diagrams of the epochs the report draws (``--diagram-epochs``, see
    ``reports.diagrams.diagram_epochs``), and a warning naming chosen epochs it has none of."""
    from attnconv_pl.reports.diagrams import ALL, diagram_epochs

    drawn = diagram_epochs(record.diagrams, chosen)
    absent = sorted(set(chosen or [ALL]) - {ALL} - set(record.diagrams))
    warning = (f"--diagram-epochs: run {record.label} has no persistence diagrams at epoch(s) "
               f"{', '.join(map(str, absent))} "
               f"(it has them at {', '.join(map(str, sorted(record.diagrams))) or 'none'})"
               if absent else None)
    return dataclasses.replace(record, diagrams={epoch: record.diagrams[epoch] for epoch in drawn}), warning


def selected_analyses(args: argparse.Namespace) -> set[str]:
    """``--analyses`` (default: dynamics and training_records), plus robustness when ``--robustness``
    is given."""
    chosen = set(args.analyses or ("dynamics", "training_records"))
    return chosen | ({"robustness"} if args.robustness is not None else set())


def checkpoint_analysis_names(analyses: set[str]) -> list[str]:
    """The analyses of ``analyses`` that run on each checkpoint, in report order (the others,
    such as training_records, read the run's files)."""
    from attnconv_pl.analyses import Analysis, load_analysis

    return [name for name in list_analyses()
            if name in analyses and load_analysis(name).probe_checkpoint is not Analysis.probe_checkpoint]


def robustness_request(args: argparse.Namespace, choice):
    """The ``RobustnessSettings`` of ``--robustness`` (its levels, default ones when none are given).

    Raises:
        ProbeInputError: ``--data`` names another dataset (accuracy needs the run's own labels).
    """
    if choice.dataset is not None:
        raise ProbeInputError(
            f"--robustness measures accuracy, which needs the run's own dataset, but --data {args.data} names "
            "a dataset; give only a split (--data val, --data test) or leave --data out")
    return RobustnessSettings(noise_levels=check_noise_levels(args.robustness or DEFAULT_NOISE_LEVELS),
                              size=args.robustness_size, split=choice.split or "val")


if __name__ == "__main__":
    sys.exit(main())
