"""Probe saved checkpoints and compare runs side by side in a report with plots.

    python probe.py runs/default/RUN --out reports/RUN               # a run's checkpoints, its own settings
    python probe.py runs/attn/s0 runs/attn/s1 runs/conv/s0 runs/conv/s1 --out reports/attn-vs-conv
    python probe.py runs/default/RUN/checkpoints/epoch=003.ckpt --out R --data test --dynamics.layers '[mixer*]'
    python probe.py runs/metric_attention_digits/* --out R --analyses dynamics training_records robustness
    python probe.py my_net.safetensors --arch timm:resnet18 --data cifar10 --out R   # a bare state dict

Each PATH is a checkpoint file or a run directory (all its ``checkpoints/epoch=NNN.ckpt``). The
probe settings default to the run's own (its ``config.yaml``), so with no options the numbers
equal those the training callback logged. ``python probe.py --help`` lists every option.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from jsonargparse import Namespace

from attnconv_pl.analyses import list_analyses
from attnconv_pl.errors import ConfigError, ProbeInputError, check_creatable_dir
from attnconv_pl.offline.checkpoints import RunCheckpoints, collect_runs
from attnconv_pl.offline.options import DEFAULT_ANALYSES, PROBING, parse_args, settings_given

EXIT_BAD_INPUT = 2


def run_labels(runs: list[RunCheckpoints], names: Optional[list[str]]) -> list[str]:
    """One distinct label per run: ``--run_name`` values, else the run names (``#2``... on clashes)."""
    if names is not None:
        if len(names) != len(runs):
            raise ProbeInputError(
                f"--run_name has {len(names)} name(s) for {len(runs)} run(s) "
                f"({', '.join(run.name for run in runs)}); give one name per run, in order")
        if len(set(names)) != len(names):
            raise ProbeInputError(f"--run_name values must differ, got {names}")
        return list(names)
    labels: list[str] = []
    for run in runs:
        label = run.name
        labels.append(label if label not in labels else f"{label}#{labels.count(label) + 1}")
    return labels


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python probe.py ARGS`` (default ``sys.argv[1:]``); the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
    except SystemExit as stop:  # --help, --print_config, or a bad command line (its message printed)
        return stop.code
    args.out = Path(args.out)
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


def weights_as_checkpoints(args: Namespace, runs: list[RunCheckpoints], folder: Path) -> list[RunCheckpoints]:
    """``runs`` with each bare weights file turned into a checkpoint in ``folder`` (the network of
    ``--arch`` for ``--data``; ``runs`` as they are without ``--arch``). When there is one,
    ``args.data`` keeps only its split: the weights' dataset is their own data, and train.py runs
    are probed on theirs.

    Raises:
        ConfigError: bad --arch_kwargs / --data_kwargs, or a file that cannot be probed.
    """
    if args.arch is None:
        if args.arch_kwargs is not None or args.data_kwargs is not None:
            raise ConfigError("--arch_kwargs and --data_kwargs describe weights files: give --arch NAME too")
        return runs
    from attnconv_pl.offline.data_choice import DataChoice
    from attnconv_pl.offline.weights import WeightsModel, parse_mapping, weights_runs

    choice = DataChoice.parse(args.data, args.data_dir)
    model = WeightsModel(args.arch, choice, parse_mapping(args.arch_kwargs, "--arch_kwargs"),
                         parse_mapping(args.data_kwargs, "--data_kwargs"))
    converted = weights_runs(runs, model, folder)
    if converted != runs and choice.dataset is not None:
        args.data = choice.split
    return converted


def probe_and_report(args: Namespace, runs: list[RunCheckpoints], labels: list[str], completed: list,
                     command: str) -> None:
    """Probe every run, rewrite the tables after each, then write the report (and log it).

    ``completed`` receives each :class:`~attnconv_pl.reports.records.ProbedRun` as it is done.
    """
    from attnconv_pl.io.console import Progress
    from attnconv_pl.offline.assemble import group_key, group_labels, probed_run, unreachable_target
    from attnconv_pl.offline.data_choice import DataChoice, resolve_device
    from attnconv_pl.offline.prober import RunProber
    from attnconv_pl.reports.report import write_report, write_tables

    choice = DataChoice.parse(args.data, args.data_dir)
    analyses = set(args.analyses or DEFAULT_ANALYSES)
    overrides = settings_given(args)
    probing = overrides.pop(PROBING, {})
    check_settings_of_analyses_run(overrides, analyses)
    if "robustness" in analyses:
        overrides["robustness"] = {**robustness_split(args, choice), **overrides.get("robustness", {})}
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
    """``record`` holding the diagrams of the epochs the report draws (``--diagram_epochs``, see
    ``reports.diagrams.diagram_epochs``), and a warning naming chosen epochs it has none of."""
    from attnconv_pl.reports.diagrams import ALL, diagram_epochs

    drawn = diagram_epochs(record.diagrams, chosen)
    absent = sorted(set(chosen or [ALL]) - {ALL} - set(record.diagrams))
    warning = (f"--diagram_epochs: run {record.label} has no persistence diagrams at epoch(s) "
               f"{', '.join(map(str, absent))} "
               f"(it has them at {', '.join(map(str, sorted(record.diagrams))) or 'none'})"
               if absent else None)
    return dataclasses.replace(record, diagrams={epoch: record.diagrams[epoch] for epoch in drawn}), warning


def check_settings_of_analyses_run(overrides: dict[str, dict[str, Any]], analyses: set[str]) -> None:
    """Refuse settings given for an analysis this call does not run (they would change nothing).

    Raises:
        ProbeInputError: naming the option and the ``--analyses`` that runs it.
    """
    for name, values in overrides.items():
        if name not in analyses:
            chosen = [analysis for analysis in list_analyses() if analysis in analyses | {name}]
            raise ProbeInputError(f"--{name}.{next(iter(values))} sets the {name} analysis, which this call does not "
                                  f"run; add it to the analyses: --analyses {' '.join(chosen)}")


def checkpoint_analysis_names(analyses: set[str]) -> list[str]:
    """The analyses of ``analyses`` that run on checkpoints (implement ``probe_checkpoint``), in
    report order."""
    from attnconv_pl.analyses import Analysis, load_analysis

    return [name for name in list_analyses()
            if name in analyses and load_analysis(name).probe_checkpoint is not Analysis.probe_checkpoint]


def robustness_split(args: Namespace, choice) -> dict[str, str]:
    """The robustness settings ``--data`` implies: its split when it names one.

    Raises:
        ProbeInputError: ``--data`` names another dataset (accuracy needs the run's own labels).
    """
    if choice.dataset is not None:
        raise ProbeInputError(
            f"--analyses robustness measures accuracy, which needs the run's own dataset, but --data {args.data} "
            "names a dataset; give only a split (--data val, --data test) or leave --data out")
    return {"split": choice.split} if choice.split else {}


if __name__ == "__main__":
    sys.exit(main())
