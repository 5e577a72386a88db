r"""The tables of docs/results.md, from the runs and reports of the digits studies.

    python -m attnconv_pl.study --config configs/studies/attention_vs_conv_digits.yaml --seeds 0 1 2
    python -m attnconv_pl.study --config configs/studies/vit_vs_resnet_digits.yaml --seeds 0 1 2
    python -m attnconv_pl.study --config configs/studies/metric_attention_digits.yaml --seeds 0 1 2
    python -m attnconv_pl.study --config configs/studies/cct_digits.yaml --seeds 0 1 2
    python -m attnconv_pl.study --config configs/studies/stiffness_digits.yaml --seeds 0 1 2 \
        -- --stiffness.enabled false
    python docs/results_tables.py --from_runs [--runs_dir runs] [--reports_dir reports] --write_data
    python docs/results_tables.py            # every table, from docs/results/data/ alone
    python docs/results_tables.py --check    # exit 1, naming the table, where docs/results.md differs

Tables are computed from the per-seed numbers shipped in ``docs/results/data/`` (the default), so
any reader can re-derive every table and verdict without the runs. ``--from_runs`` reads the runs
instead, and ``--write_data`` then writes the numbers the tables used to ``docs/results/data/``.
With ``--from_runs`` it reads ``<runs_dir>/<study>/<variant>-seed<N>/dynamics.csv`` (the numbers the training callback
probed; the study report's ``dynamics.csv`` adds the numbers only ``probe.py`` computed),
``.../metrics.csv`` (training records), ``<reports_dir>/cct_digits_threshold_<T>/dynamics.csv``
(the single-node threshold sweep, when present) and ``<reports_dir>/<study>/summary.json``
(accuracy under input noise, ``probe.py --analyses ... robustness``), and prints markdown: per study the
numbers of each variant as mean ± sample standard deviation over the seeds, then the claims of
the papers' claims (arXiv 2410.17628, 2412.18288) with a verdict by :func:`verdict`.

Verdict rule (fixed before the runs): for a claim "A < B" (or "A > B") the differences
d_s = A_s - B_s are paired by seed s (same seed, same data split, same probe set);
*agree*: every d_s has the claimed sign and |mean(d)| > 2 sd(d); *disagree*: every d_s has the
opposite sign and |mean(d)| > 2 sd(d); *inconclusive*: anything else (a missing number too).
The margin |mean(d)| / (2 sd(d)) is printed beside each verdict; where every d_s has one sign and
the margin is within 5% of 1 (:data:`FRAGILE_BAND`), the verdict is *fragile*, which counts as
inconclusive.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from attnconv_pl.analyses.training_records import best_val_accuracy, epochs_to_target_loss, read_metrics

SEEDS = (0, 1, 2)
TARGET_LOSS = 1.0
"""Target mean training loss (nats) of "epochs to target loss": probe.py's default."""
RESIDUAL_BLOCK = re.compile(r"^(blocks\.\d+|layer\d\.\d+)$")
"""The residual blocks of a ViT (``blocks.i``) and a ResNet (``layerS.i``)."""
FINAL_FEATURES = {"vit_mini": "norm", "resnet18": "avgpool"}
"""The last probed layer before the classifier of each model of the ViT-vs-ResNet study."""
DIAGRAM_DISTANCES = [f"h{dim}_{distance}" for dim in (0, 1) for distance in ("w1", "w2", "bottleneck")]
DISTANCE_NAMES = {"w1": "W1", "w2": "W2", "bottleneck": "W∞"}


Key = tuple[int, str, str]
"""``(epoch, layer, metric)`` of one number of ``dynamics.csv``."""


@dataclass
class Run:
    """One trained run: its probed numbers, training rows and (when measured) noise accuracy.

    Attributes:
        values: ``{(epoch, layer, metric): value}`` from ``dynamics.csv``.
        metrics: rows of ``metrics.csv`` in epoch order.
        robustness: ``summary.json``'s ``robustness`` entry of the run, or None.
        used: the ``(epoch, metric)`` pairs the tables read (what ``--write_data`` ships).
    """

    name: str
    variant: str
    values: dict[Key, float]
    metrics: list[dict[str, float]]
    robustness: Optional[dict]
    used: set[tuple[int, str]] = field(default_factory=set, compare=False, repr=False)

    @property
    def last_epoch(self) -> int:
        """The last epoch with a number (-1 for a run with none)."""
        return max((epoch for epoch, _, _ in self.values), default=-1)

    def layers(self) -> list[str]:
        """Probed layers in depth order (the order of their first rows in ``dynamics.csv``)."""
        return list(dict.fromkeys(layer for _, layer, _ in self.values if layer))

    def value(self, epoch: int, layer: str, metric: str) -> float:
        self.used.add((epoch, metric))
        return self.values.get((epoch, layer, metric), math.nan)


def read_numbers(path: Path) -> dict[str, dict[tuple[int, str, str], float]]:
    """``{run label: {(epoch, layer, metric): value}}`` of a report's ``dynamics.csv`` ({} when absent)."""
    numbers: dict[str, dict[tuple[int, str, str], float]] = {}
    if path.is_file():
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                numbers.setdefault(row["run"], {})[(int(row["epoch"]), row["layer"], row["metric"])] = \
                    float(row["value"] or "nan")
    return numbers


def read_run(run_dir: Path, variant: str, summary: dict, reported: dict[tuple[int, str, str], float]) -> Run:
    """A run of ``variant`` from its directory, its study's ``summary.json`` (``{}`` when there is
    none) and the study report's numbers of the run (``reported``); a run trained with no
    per-epoch analysis has no ``dynamics.csv`` of its own."""
    values = {}
    if (run_dir / "dynamics.csv").is_file():
        with (run_dir / "dynamics.csv").open(newline="") as handle:
            values = {(int(row["epoch"]), row["layer"], row["metric"]): float(row["value"] or "nan")
                      for row in csv.DictReader(handle)}
    label = f"{run_dir.parent.name}/{run_dir.name}"
    entry = next((run for run in summary.get("runs", []) if run["label"] == label), {})
    return Run(label, variant, {**values, **reported}, read_metrics(run_dir / "metrics.csv"), entry.get("robustness"))


@dataclass
class StudyNumbers:
    """What a study's tables are computed from.

    Attributes:
        runs: ``{variant: [run of each seed in SEEDS]}``.
        sweeps: ``{sweep: {run name: {(epoch, layer, metric): value}}}``: numbers of the same
            checkpoints probed again with another setting (``probe.py --out reports/<study>_<sweep>``).
    """

    runs: dict[str, list[Run]]
    sweeps: dict[str, dict[str, dict[Key, float]]]


def read_study(study: str, variants: Sequence[str], sweeps: Sequence[str], runs_dir: Path,
               reports_dir: Path, source: Optional[str] = None) -> StudyNumbers:
    """A study's numbers from its run directories (those of the study ``source`` when it probes
    another study's runs) and reports."""
    source = source or study
    summary_path = reports_dir / study / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    reported = read_numbers(reports_dir / study / "dynamics.csv")
    runs = {variant: [read_run(runs_dir / source / f"{variant}-seed{seed}", variant, summary,
                               reported.get(f"{source}/{variant}-seed{seed}", {})) for seed in SEEDS]
            for variant in variants}
    return StudyNumbers(runs, {sweep: read_numbers(reports_dir / f"{study}_{sweep}" / "dynamics.csv")
                               for sweep in sweeps})


VALUE_COLUMNS = ("run", "epoch", "layer", "metric", "value")
TRAINING_COLUMNS = ("epoch", "train_loss", "val_acc")
"""The ``metrics.csv`` columns the tables read (epochs to the target loss, best and final accuracy)."""


def cell(value: float) -> str:
    """A number as written to a data file: the shortest text that reads back to the same float."""
    return "" if math.isnan(value) else repr(float(value))


def write_rows(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """Write a CSV atomically (a reader never sees half a file)."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    partial.replace(path)


def value_rows(numbers: dict[str, dict[Key, float]]) -> list[tuple]:
    return [(name, epoch, layer, metric, cell(value))
            for name, values in numbers.items() for (epoch, layer, metric), value in values.items()]


def write_data(study: str, numbers: StudyNumbers, data_dir: Path) -> None:
    """Write the numbers of ``study`` that its tables read (``Run.used``; call after the tables)
    to ``data_dir``: ``<study>.csv`` (probed numbers), ``<study>_training.csv`` (training rows),
    ``<study>_robustness.csv`` (accuracy under noise, when measured), ``<study>_<sweep>.csv``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    runs = [run for variant_runs in numbers.runs.values() for run in variant_runs]
    write_rows(data_dir / f"{study}.csv", VALUE_COLUMNS, value_rows(
        {run.name: {key: value for key, value in run.values.items() if (key[0], key[2]) in run.used}
         for run in runs}))
    write_rows(data_dir / f"{study}_training.csv", ("run", *TRAINING_COLUMNS),
               [(run.name, row["epoch"], *(cell(row.get(column, math.nan)) for column in TRAINING_COLUMNS[1:]))
                for run in runs for row in run.metrics])
    if any(run.robustness for run in runs):
        write_rows(data_dir / f"{study}_robustness.csv", ("run", "noise_level", "accuracy"),
                   [(run.name, cell(sigma), cell(accuracy)) for run in runs if run.robustness
                    for sigma, accuracy in zip(run.robustness["noise_levels"], run.robustness["final_accuracy"])])
    for sweep, swept in numbers.sweeps.items():
        if swept:
            write_rows(data_dir / f"{study}_{sweep}.csv", VALUE_COLUMNS, value_rows(swept))


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a data file ([] when there is none)."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_values(path: Path) -> dict[str, dict[Key, float]]:
    numbers: dict[str, dict[Key, float]] = {}
    for row in read_rows(path):
        numbers.setdefault(row["run"], {})[(int(row["epoch"]), row["layer"], row["metric"])] = \
            float(row["value"] or "nan")
    return numbers


def read_study_data(study: str, variants: Sequence[str], sweeps: Sequence[str], data_dir: Path,
                    source: Optional[str] = None) -> StudyNumbers:
    """A study's numbers from the files :func:`write_data` wrote (runs named after ``source``)."""
    values = read_values(data_dir / f"{study}.csv")
    training: dict[str, list[dict[str, float]]] = {}
    for row in read_rows(data_dir / f"{study}_training.csv"):
        training.setdefault(row["run"], []).append(
            {"epoch": int(row["epoch"]), **{column: float(row[column] or "nan") for column in TRAINING_COLUMNS[1:]}})
    robustness: dict[str, dict] = {}
    for row in read_rows(data_dir / f"{study}_robustness.csv"):
        entry = robustness.setdefault(row["run"], {"noise_levels": [], "final_accuracy": []})
        entry["noise_levels"].append(float(row["noise_level"]))
        entry["final_accuracy"].append(float(row["accuracy"] or "nan"))
    names = {variant: [f"{source or study}/{variant}-seed{seed}" for seed in SEEDS] for variant in variants}
    runs = {variant: [Run(name, variant, values.get(name, {}), training.get(name, []), robustness.get(name))
                      for name in names[variant]] for variant in variants}
    return StudyNumbers(runs, {sweep: read_values(data_dir / f"{study}_{sweep}.csv") for sweep in sweeps})


def at_epoch(run: Run, epoch: int, variant: str) -> Run:
    """``run`` as the network of one ``epoch`` (its numbers of that epoch only), named ``variant``;
    what the tables read of it counts as read of ``run``."""
    return Run(run.name, variant, {key: value for key, value in run.values.items() if key[0] == epoch},
               run.metrics, run.robustness, run.used)


Measure = Callable[[Run], float]
"""One number of a run (NaN when it has none)."""


def at_layer(layer: str, metric: str, epoch: Optional[int] = None) -> Measure:
    """``metric`` of ``layer`` at ``epoch`` (default: the run's last probed epoch)."""
    return lambda run: run.value(run.last_epoch if epoch is None else epoch, layer, metric)


def final_features(metric: str, epoch: Optional[int] = None) -> Measure:
    """``metric`` of the model's last layer before the classifier (:data:`FINAL_FEATURES`)."""
    return lambda run: at_layer(FINAL_FEATURES[run.variant], metric, epoch)(run)


def block_mean(metric: str, epoch: Optional[int] = None, to_next_block: bool = False) -> Measure:
    """Mean of ``metric`` over the residual blocks at ``epoch`` (default: the last). With
    ``to_next_block``, only blocks followed by another block (``next_*`` then compares two blocks)."""
    def measure(run: Run) -> float:
        layers = run.layers()
        blocks = [layer for layer, after in zip(layers, [*layers[1:], ""])
                  if RESIDUAL_BLOCK.match(layer) and (not to_next_block or RESIDUAL_BLOCK.match(after))]
        return float(np.mean([at_layer(layer, metric, epoch)(run) for layer in blocks]))
    return measure


def best_val_acc(run: Run) -> float:
    best = best_val_accuracy(run.metrics)
    return math.nan if best is None else best[1]


def final_val_acc(run: Run) -> float:
    return run.metrics[-1]["val_acc"]


def final_train_loss(run: Run) -> float:
    return run.metrics[-1]["train_loss"]


def epochs_to_target(run: Run) -> float:
    reached = epochs_to_target_loss(run.metrics, TARGET_LOSS)
    return math.nan if reached is None else float(reached)


def noise_accuracy(level: Optional[float] = None) -> Measure:
    """Accuracy under noise of standard deviation ``level`` at the last probed epoch; None: the
    mean over every level above 0."""
    def measure(run: Run) -> float:
        if run.robustness is None or run.robustness.get("final_accuracy") is None:
            return math.nan
        pairs = list(zip(run.robustness["noise_levels"], run.robustness["final_accuracy"]))
        chosen = [acc for sigma, acc in pairs if (sigma > 0 if level is None else sigma == level)]
        return float(np.mean(chosen)) if chosen else math.nan
    return measure


def noise_drop(run: Run) -> float:
    """Clean accuracy minus accuracy at the highest noise level (last probed epoch)."""
    levels = run.robustness["noise_levels"] if run.robustness else [math.nan]
    return noise_accuracy(0.0)(run) - noise_accuracy(max(levels))(run)


FRAGILE_BAND = 0.05
"""A verdict whose margin |mean(d)| / (2 sd(d)) is within this fraction of 1 is fragile."""


def margin(differences: Sequence[float]) -> float:
    """|mean(d)| / (2 sd(d)): above 1 the 2-sd part of the rule holds (inf for equal differences
    that are not 0, NaN with a missing difference)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or np.isnan(d).any():
        return math.nan
    mean, two_sd = abs(d.mean()), 2 * d.std(ddof=1)
    if two_sd == 0:
        return math.inf if mean > 0 else math.nan
    return float(mean / two_sd)


def verdict(differences: Sequence[float], claimed_sign: int) -> str:
    """The verdict of a claim from the paired differences A_s - B_s (module docstring):
    agree, disagree, inconclusive, or fragile; ``claimed_sign`` is -1 for "A < B" and +1 for "A > B"."""
    d = np.asarray(differences, dtype=float)
    ratio = margin(d)
    if math.isnan(ratio):
        return "inconclusive"
    one_sign = (np.sign(d) == claimed_sign).all() or (np.sign(d) == -claimed_sign).all()
    if one_sign and abs(ratio - 1) <= FRAGILE_BAND:
        return "fragile"
    if ratio > 1 and (np.sign(d) == claimed_sign).all():
        return "agree"
    if ratio > 1 and (np.sign(d) == -claimed_sign).all():
        return "disagree"
    return "inconclusive"


def margin_text(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else ("∞" if math.isinf(ratio) else f"{ratio:.2f}")


def decimals_for(spread_value: float) -> int:
    """Decimals that show ``spread_value`` with two significant digits (at least 0)."""
    if math.isnan(spread_value) or spread_value == 0:
        return 3
    return max(0, 1 - math.floor(math.log10(abs(spread_value))))


def number(value: float, decimals: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{decimals}f}"


def spread(values: Sequence[float], scale: float = 1.0) -> str:
    """``mean ± sd`` (sample standard deviation) of ``values`` times ``scale``, the mean rounded
    where the sd has two significant digits; with a missing value, each value."""
    v = np.asarray(values, dtype=float) * scale
    if np.isnan(v).any():
        return "n/a (" + ", ".join("n/a" if math.isnan(x) else f"{x:.4g}" for x in v) + ")"
    sd = v.std(ddof=1)
    decimals = decimals_for(sd)
    return f"{number(v.mean(), decimals)} ± {number(sd, decimals)}"


@dataclass(frozen=True)
class Claim:
    """A claim "``a`` < ``b``" (``claimed_sign`` -1) or "``a`` > ``b``" (+1) about ``measure``
    (``measure_b`` for ``b`` when it differs: another metric or a constant)."""

    text: str
    compared: str
    measure: Measure
    a: str
    b: str
    claimed_sign: int
    scale: float = 1.0
    measure_b: Optional[Measure] = None


def claim_differences(claim: Claim, runs: dict[str, list[Run]]) -> tuple[list[float], list[float], list[float]]:
    """A, B and A - B of each seed."""
    a = [claim.measure(run) for run in runs[claim.a]]
    b = [(claim.measure_b or claim.measure)(run) for run in runs[claim.b]]
    return a, b, [x - y for x, y in zip(a, b)]


def claim_row(claim: Claim, runs: dict[str, list[Run]]) -> str:
    a, b, d = claim_differences(claim, runs)
    decimals = decimals_for(float(np.std(d, ddof=1)) * claim.scale)
    per_seed = ", ".join(number(x * claim.scale, decimals) for x in d)
    return (f"| {claim.text} | {claim.compared} | {spread(a, claim.scale)} | {spread(b, claim.scale)} "
            f"| {per_seed} | {spread(d, claim.scale)} | {margin_text(margin(d))} "
            f"| **{verdict(d, claim.claimed_sign)}** |")


def claims_table(claims: Sequence[Claim], runs: dict[str, list[Run]]) -> list[str]:
    return ["| claim (paper) | compared | A | B | A − B, seeds 0, 1, 2 | A − B | margin | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
            *(claim_row(claim, runs) for claim in claims)]


def numbers_table(rows: Sequence[tuple[str, Callable[[Optional[int]], Measure]]], runs: dict[str, list[Run]],
                  ) -> list[str]:
    """One row per quantity, one column per variant at initialisation and at its last epoch."""
    last = {variant: runs[variant][0].last_epoch for variant in runs}
    header = [f"{variant}, epoch {epoch}" for variant in runs for epoch in (0, last[variant])]
    lines = ["| quantity | " + " | ".join(header) + " |", "| --- |" + " --- |" * len(header)]
    for label, measure_at in rows:
        cells = [spread([measure_at(epoch)(run) for run in runs[variant]])
                 for variant in runs for epoch in (0, None)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def training_table(runs: dict[str, list[Run]], with_noise: bool = False) -> list[str]:
    """Per variant: final and best validation accuracy (%), epochs to the target loss (n/a: not
    reached), the last epoch's mean training loss (nats) and with
    ``with_noise`` the accuracy (%) at each noise level of the last probed epoch."""
    columns: list[tuple[str, Measure, float]] = [
        ("final val acc (%)", final_val_acc, 100), ("best val acc (%)", best_val_acc, 100),
        (f"epochs to train loss ≤ {TARGET_LOSS:g}", epochs_to_target, 1), ("final train loss", final_train_loss, 1)]
    if with_noise:
        levels = next(run.robustness["noise_levels"] for variant in runs for run in runs[variant] if run.robustness)
        columns += [(f"acc. σ={sigma:g} (%)", noise_accuracy(sigma), 100) for sigma in levels]
    lines = ["| variant | " + " | ".join(name for name, _, _ in columns) + " |", "| --- |" + " --- |" * len(columns)]
    for variant, variant_runs in runs.items():
        cells = [spread([measure(run) for run in variant_runs], scale) for _, measure, scale in columns]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def distance_label(name: str) -> str:
    dim, distance = name.split("_")
    return f"{DISTANCE_NAMES[distance]} H{dim[1:]}"


def attention_vs_conv(numbers: StudyNumbers) -> list[str]:
    runs = numbers.runs
    compactness = [("variance", "variance"), ("ID (TwoNN)", "id_twonn"), ("ID (MLE)", "id_mle")]
    stability = [(f"input→output {distance_label(name)}", f"stability_{name}") for name in DIAGRAM_DISTANCES]
    rows = [(label, lambda epoch, m=metric: at_layer("mixer", m, epoch)) for label, metric in compactness + stability]
    claims = [Claim("variance of attention outputs below conv outputs", "`mixer` output, variance, last epoch",
                    at_layer("mixer", "variance"), "attention_net", "conv_net", -1)]
    claims += [Claim("ID of attention outputs below conv outputs", f"`mixer` output, {label}, last epoch",
                     at_layer("mixer", metric), "attention_net", "conv_net", -1) for label, metric in compactness[1:]]
    claims += [Claim("input-to-output diagram distances smaller for attention",
                     f"`mixer` input vs output, {label.split(' ', 1)[1]}, last epoch",
                     at_layer("mixer", metric), "attention_net", "conv_net", -1) for label, metric in stability]
    return ["### attention_vs_conv_digits: the `mixer` layer", "", *numbers_table(rows, runs), "",
            *training_table(runs), "", "Claims (A = attention_net, B = conv_net):", "", *claims_table(claims, runs)]


def vit_vs_resnet(numbers: StudyNumbers) -> list[str]:
    runs = numbers.runs
    rows = [("variance, final features (`norm` / `avgpool`)", lambda epoch: final_features("variance", epoch)),
            ("variance, mean over residual blocks", lambda epoch: block_mean("variance", epoch))]
    rows += [(f"block→next block {distance_label(name)}, mean",
              lambda epoch, m=f"next_{name}": block_mean(m, epoch, to_next_block=True)) for name in DIAGRAM_DISTANCES]
    claims = [Claim("ViT output variance above ResNet's", "variance of the final features (ViT `norm`, ResNet "
                    "`avgpool`), last epoch", final_features("variance"), "vit_mini", "resnet18", +1),
              Claim("ViT output variance above ResNet's", "variance of the residual blocks' outputs, mean over "
                    "blocks, last epoch", block_mean("variance"), "vit_mini", "resnet18", +1)]
    claims += [Claim("ViT layer-to-layer diagram distances smaller",
                     f"{distance_label(name)} from each block's output to the next block's, mean, last epoch",
                     block_mean(f"next_{name}", to_next_block=True), "vit_mini", "resnet18", -1)
               for name in DIAGRAM_DISTANCES]
    return ["### vit_vs_resnet_digits", "", *numbers_table(rows, runs), "", *training_table(runs), "",
            "Claims (A = vit_mini, B = resnet18):", "", *claims_table(claims, runs)]


def metric_attention(numbers: StudyNumbers) -> list[str]:
    runs = numbers.runs
    claims = []
    for score in ("shared_metric", "two_projection"):
        claims += [
            Claim("metric-attention: better training efficiency", f"epochs to mean train loss ≤ {TARGET_LOSS:g}",
                  epochs_to_target, score, "dot", -1),
            Claim("metric-attention: better accuracy", "best val acc (%) over the epochs",
                  best_val_acc, score, "dot", +1, scale=100),
            Claim("metric-attention: better robustness", "accuracy (%) under noise, mean over σ > 0, last epoch",
                  noise_accuracy(), score, "dot", +1, scale=100),
            Claim("metric-attention: better robustness", "accuracy drop (points) from σ = 0 to the largest σ, "
                  "last epoch", noise_drop, score, "dot", -1, scale=100),
        ]
    return ["### metric_attention_digits", "", *training_table(runs, with_noise=True), "",
            "Claims (A = the metric score named in the row, B = dot):", "",
            *claims_table([claim for claim in claims if claim.a == "shared_metric"], runs), "",
            "A = two_projection, B = dot:", "",
            *claims_table([claim for claim in claims if claim.a == "two_projection"], runs)]


MHA, FF = re.compile(r"^blocks\.\d+\.attn\.nodes$"), re.compile(r"^blocks\.\d+\.mlp\.fc2$")
THRESHOLDS = (0.2, 0.3, 0.5)
"""The single-node threshold sweep (0.3, the default, is the study's own report)."""


def constant(value: float) -> Measure:
    return lambda run: value


def sub_blocks(run: Run, pattern: re.Pattern) -> list[str]:
    return [layer for layer in run.layers() if pattern.match(layer)]


def mean_over(pattern: re.Pattern, metric: str, epoch: Optional[int] = None) -> Measure:
    """Mean of ``metric`` over the layers matching ``pattern`` at ``epoch`` (default: the last)."""
    return lambda run: float(np.mean([at_layer(layer, metric, epoch)(run) for layer in sub_blocks(run, pattern)]))


def depth_gain(pattern: re.Pattern, metric: str) -> Measure:
    """``metric`` of the deepest layer matching ``pattern`` minus that of the shallowest, last epoch."""
    def measure(run: Run) -> float:
        layers = sub_blocks(run, pattern)
        return at_layer(layers[-1], metric)(run) - at_layer(layers[0], metric)(run)
    return measure


def single_node_claims(variant: str) -> list[Claim]:
    """The claims of arXiv 2501.12900 about the network ``variant`` (trained or init)."""
    claims = [Claim("clusters are small: mean cluster size far below L (below L/2 = 5)",
                    f"{kind} nodes, mean over blocks", mean_over(pattern, "snp_cluster_size"), variant, variant, -1,
                    measure_b=constant(5.0)) for kind, pattern in (("MHA", MHA), ("FF", FF))]
    claims += [Claim(f"{label} rises with depth", f"{kind}, last block − first block",
                     depth_gain(pattern, metric), variant, variant, +1, measure_b=constant(0.0))
               for label, metric in (("SNR", "snp_snr"), ("readout accuracy", "snp_readout_acc"))
               for kind, pattern in (("MHA", MHA), ("FF", FF))]
    claims += [Claim("ANDC keeps accuracy better than random pruning", f"{kind}: refitted ANDC vs random masks, "
                     "mean over blocks", mean_over(pattern, "andc_acc_refit"), variant, variant, +1, scale=100,
                     measure_b=mean_over(pattern, "andc_random_acc")) for kind, pattern in (("MHA", MHA), ("FF", FF))]
    claims.append(Claim("heads overlap less than random node groups", "MHA: Jaccard of the heads' label sets vs "
                        "random partitions, mean over blocks", mean_over(MHA, "head_jaccard"), variant, variant, -1,
                        measure_b=mean_over(MHA, "head_jaccard_random")))
    return claims


def threshold_sweep(runs: list[Run], sweeps: dict[str, dict[str, dict[Key, float]]]) -> list[str]:
    """Per threshold, the trained networks' single-node numbers (mean ± sd over seeds)."""
    columns = [("cluster size MHA", mean_over(MHA, "snp_cluster_size")),
               ("cluster size FF", mean_over(FF, "snp_cluster_size")),
               ("SNR MHA", mean_over(MHA, "snp_snr")), ("SNR FF", mean_over(FF, "snp_snr")),
               ("ANDC − random (points), MHA", lambda run: 100 * (mean_over(MHA, "andc_acc_refit")(run)
                                                                 - mean_over(MHA, "andc_random_acc")(run))),
               ("Jaccard − random", lambda run: mean_over(MHA, "head_jaccard")(run)
                - mean_over(MHA, "head_jaccard_random")(run))]
    lines = ["| threshold | " + " | ".join(name for name, _ in columns) + " |", "| --- |" + " --- |" * len(columns)]
    for threshold in THRESHOLDS:
        if threshold == 0.3:
            swept = runs
        else:
            numbers = sweeps.get(threshold_sweep_name(threshold), {})
            if not numbers:
                continue
            swept = [Run(run.name, run.variant, numbers.get(run.name, {}), run.metrics, None) for run in runs]
        lines.append(f"| {threshold:g} | " + " | ".join(spread([measure(run) for run in swept])
                                                      for _, measure in columns) + " |")
    return lines


def threshold_sweep_name(threshold: float) -> str:
    return f"threshold_{threshold:g}"


def single_node(numbers: StudyNumbers) -> list[str]:
    trained = numbers.runs["cct_2_3x1_16"]
    networks = {"trained": trained, "init": [at_epoch(run, 0, "init") for run in trained]}
    layers = trained[0].layers()
    rows = [(f"{metric} `{layer}`", lambda epoch, m=metric, layer=layer: at_layer(layer, m, epoch))
            for metric in ("snp_readout_acc", "snp_snr", "snp_cluster_size") for layer in layers]
    rows += [(f"{metric}, mean over {kind}", lambda epoch, m=metric, p=pattern: mean_over(p, m, epoch))
             for metric in ("andc_acc", "andc_acc_refit", "andc_random_acc")
             for kind, pattern in (("MHA", MHA), ("FF", FF))]
    rows += [(metric, lambda epoch, m=metric: mean_over(MHA, m, epoch))
             for metric in ("head_labels", "heads_per_label", "head_jaccard", "head_jaccard_random")]
    return ["### cct_digits: single-node performance of cct_2_3x1_16", "",
            *numbers_table(rows, {"cct_2_3x1_16": trained}), "", *training_table({"cct_2_3x1_16": trained}), "",
            "Claims about the trained networks (A and B as named in the row; each seed paired with itself):", "",
            *claims_table(single_node_claims("trained"), networks), "",
            "The same claims about the networks at initialisation (epoch 0):", "",
            *claims_table(single_node_claims("init"), networks), "",
            "Threshold sweep (trained networks; reported, not used for a verdict):", "",
            *threshold_sweep(trained, numbers.sweeps)]


BLOCK = re.compile(r"^layer\d\.\d+$")


def across_blocks_sd(metric: str) -> Measure:
    """Standard deviation of ``metric`` across the residual blocks at the last epoch."""
    return lambda run: float(np.std([at_layer(layer, metric)(run) for layer in sub_blocks(run, BLOCK)], ddof=1))


def stiffness(numbers: StudyNumbers) -> list[str]:
    runs = numbers.runs
    rows = [(f"{metric}, mean over blocks", lambda epoch, m=metric: mean_over(BLOCK, m, epoch))
            for metric in ("stiffness_feature", "stiffness_feature_q", "rate_mean", "stiffness_jacobian",
                           "jacobian_sigma_max", "gate_mean", "gate_rate_spearman")]
    networks = {**runs, **{f"{variant} init": [at_epoch(run, 0, f"{variant} init") for run in variant_runs]
                           for variant, variant_runs in runs.items()}}
    claims = []
    for variant in runs:
        claims += [
            Claim("stiffness index > 1 after training", f"{variant}: stiffness_feature_q, mean over blocks",
                  mean_over(BLOCK, "stiffness_feature_q"), variant, variant, +1, measure_b=constant(1.0)),
            Claim("stiffness varies across blocks more after training", f"{variant}: sd of stiffness_feature_q "
                  "across blocks, trained vs init", across_blocks_sd("stiffness_feature_q"), variant,
                  f"{variant} init", +1),
            Claim("stiffness index above initialisation", f"{variant}: stiffness_feature_q, mean over blocks, "
                  "trained vs init", mean_over(BLOCK, "stiffness_feature_q"), variant, f"{variant} init", +1),
        ]
    claims += [Claim("channel attention helps: se ≥ none", "best val acc (%)", best_val_acc, "se", "none", +1,
                     scale=100),
               Claim("a stiffness-aware step helps: step ≥ se", "best val acc (%)", best_val_acc, "step", "se", +1,
                     scale=100)]
    claims += [Claim("sign of the gate-rate correlation (reported; the paper's sign is unknown to us)",
                     f"{variant}: gate_rate_spearman, mean over blocks, vs 0", mean_over(BLOCK, "gate_rate_spearman"),
                     variant, variant, +1, measure_b=constant(0.0)) for variant in ("se", "step")]
    return ["### stiffness_digits: resnet20 with no, SE or step-size channel attention", "",
            *numbers_table(rows, runs), "", *training_table(runs), "",
            "Claims (A and B as named in the row):", "", *claims_table(claims, networks)]


CONVEX_HEADS = ("linear", "mlp", "attention", "linear_attention", "gated_relu_attention")
BETAS = ("0.0001", "0.001", "0.01", "0.1")


def read_convex_heads(data_dir: Path) -> StudyNumbers:
    """``docs/convex_heads_study.py``'s per-seed numbers (its CSV is itself the data: it writes
    ``convex_heads.csv`` there) as runs of each head and of the small instance, every number at
    epoch 0 of layer ``""``."""
    values: dict[tuple[str, int], dict[Key, float]] = {}
    for row in read_rows(data_dir / "convex_heads.csv"):
        values.setdefault((row["variant"], int(row["seed"])), {})[(0, "", row["metric"])] = float(row["value"] or "nan")
    runs = {variant: [Run(f"convex_heads/{variant}-seed{seed}", variant, values.get((variant, seed), {}), [], None)
                      for seed in SEEDS] for variant in (*CONVEX_HEADS, "small_instance")}
    return StudyNumbers(runs, {})


def convex_heads(numbers: StudyNumbers) -> list[str]:
    runs = numbers.runs
    top1, top5 = at_layer("", "val_top1"), at_layer("", "val_top5")
    heads = ["| head | val top-1 (%) | val top-5 (%) | L-BFGS iterations | converged (seeds) |",
             "| --- | --- | --- | --- | --- |"]
    for head in CONVEX_HEADS:
        converged = [at_layer("", "converged")(run) for run in runs[head]]
        heads.append(f"| {head} | {spread([top1(run) for run in runs[head]], 100)} "
                     f"| {spread([top5(run) for run in runs[head]], 100)} "
                     f"| {spread([at_layer('', 'iterations')(run) for run in runs[head]])} "
                     f"| {int(np.nansum(converged))} of {len(converged)} |")
    small = runs["small_instance"]
    optimality = ["| seed | (fit − CVXPY) / CVXPY objective | duality gap / objective | fit converged "
                  "| CVXPY optimal | rank fit | rank Z* |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for seed, run in zip(SEEDS, small):
        get = lambda metric, run=run: at_layer("", metric)(run)  # noqa: E731
        optimality.append(f"| {seed} | {get('fit_minus_cvxpy_relative'):.1e} | {get('relative_gap'):.1e} "
                          f"| {get('fit_converged'):.0f} | {get('cvxpy_converged'):.0f} "
                          f"| {get('rank_fit'):.0f} | {get('rank_z_star'):.0f} |")
    ranks = ["| beta | rank Z*, seeds 0, 1, 2 | mean ± sd | CVXPY optimal (seeds) |", "| --- | --- | --- | --- |"]
    for beta in BETAS:
        per_seed = [at_layer("", f"rank_z_star_beta={beta}")(run) for run in small]
        optimal = [at_layer("", f"cvxpy_converged_beta={beta}")(run) for run in small]
        ranks.append(f"| {float(beta):g} | {', '.join(number(r, 0) for r in per_seed)} | {spread(per_seed)} "
                     f"| {int(np.nansum(optimal))} of {len(optimal)} |")
    claims = [Claim(f"{a} heads beat {b} heads", "val top-1 accuracy (%)", top1, a, b, +1, scale=100)
              for a, b in (("linear_attention", "linear"), ("linear_attention", "mlp"), ("attention", "linear"))]
    return ["### convex_heads: heads on raw digit rows (8 tokens × 8 pixels)", "", *heads, "",
            "Global optimality (linear_attention, small instance):", "", *optimality, "",
            "Rank of Z* against beta (small instance):", "", *ranks, "",
            "Claims (A and B as named in the row):", "", *claims_table(claims, runs)]


ATTACK_METRIC = re.compile(r"^(fgsm|pgd)_(linf|l2)_accuracy_(.+)$")
ATTACKS = (("fgsm", "linf", "FGSM"), ("pgd", "linf", "PGD"))


def attack_accuracy(attack: str, norm: str) -> Measure:
    """Accuracy under ``attack`` (``fgsm`` or ``pgd``) of ``norm``, mean over every eps > 0 of
    the grid, at the last probed epoch (``probe.py --analyses robustness`` with attacks)."""
    def measure(run: Run) -> float:
        epoch = run.last_epoch
        found = [(float(match.group(3)), metric) for (e, layer, metric) in run.values
                 if e == epoch and not layer and (match := ATTACK_METRIC.match(metric))
                 and match.group(1, 2) == (attack, norm)]
        values = [run.value(epoch, "", metric) for eps, metric in sorted(found) if eps > 0]
        return float(np.mean(values)) if values else math.nan
    return measure


def attack_curve(attack: str, norm: str, eps: float) -> Measure:
    """Accuracy under ``attack`` at one ``eps`` of the grid (last probed epoch)."""
    return lambda run: run.value(run.last_epoch, "", f"{attack}_{norm}_accuracy_{eps:g}")


def attack_grid(runs: dict[str, list[Run]], attack: str, norm: str) -> list[float]:
    """The eps of ``attack``'s grid, as the runs give them."""
    return sorted({float(match.group(3)) for variant_runs in runs.values() for run in variant_runs
                   for (_, _, metric) in run.values
                   if (match := ATTACK_METRIC.match(metric)) and match.group(1, 2) == (attack, norm)})


def cka_between(pattern: re.Pattern, pairs: str) -> Measure:
    """Linear CKA between the probed layers that ``pattern`` matches, at the last probed epoch:
    ``pairs`` ``ends`` (the first such layer against the last) or ``neighbours`` (mean over each
    layer against the next one)."""
    def measure(run: Run) -> float:
        layers = [layer for layer in run.layers() if pattern.match(layer)]
        if len(layers) < 2:
            return math.nan
        chosen = [(layers[0], layers[-1])] if pairs == "ends" else list(zip(layers, layers[1:]))
        return float(np.mean([run.value(run.last_epoch, a, f"cka_with:{b}") for a, b in chosen]))
    return measure


def cka_pair(layer: str, other: str) -> Measure:
    """Linear CKA between two probed layers' outputs at the last probed epoch."""
    return lambda run: run.value(run.last_epoch, layer, f"cka_with:{other}")


def cka_settled(layer_pattern: re.Pattern) -> Measure:
    """Mean over the matching layers of their CKA with themselves at the first probed epoch
    (``cka_first``, at the last epoch): 1 = the layer's representation did not change."""
    def measure(run: Run) -> float:
        layers = [layer for layer in run.layers() if layer_pattern.match(layer)]
        return float(np.mean([run.value(run.last_epoch, layer, "cka_first") for layer in layers])) if layers \
            else math.nan
    return measure


def attack_table(runs: dict[str, list[Run]]) -> list[str]:
    """Per variant: accuracy (%) at each eps of each attack (last epoch)."""
    columns = [(f"{label} ε={eps:g} (%)", attack_curve(attack, norm, eps))
               for attack, norm, label in ATTACKS for eps in attack_grid(runs, attack, norm)]
    lines = ["| variant | " + " | ".join(name for name, _ in columns) + " |", "| --- |" + " --- |" * len(columns)]
    for variant, variant_runs in runs.items():
        lines.append(f"| {variant} | " + " | ".join(spread([m(run) for run in variant_runs], 100)
                                                    for _, m in columns) + " |")
    return lines


def attack_claims(text: str, a: str, b: str) -> list[Claim]:
    return [Claim(text, f"accuracy (%) under {label} (L∞), mean over ε > 0, last epoch", attack_accuracy(attack, norm),
                  a, b, +1, scale=100) for attack, norm, label in ATTACKS]


ANY_LAYER = re.compile(r".")


def attention_vs_conv_probed(numbers: StudyNumbers) -> list[str]:
    runs = numbers.runs
    claims = attack_claims("attention more robust in adversarial tasks", "attention_net", "conv_net")
    claims += [Claim("attention changes its input less (the stability claim, measured by CKA)",
                     "linear CKA of the `mixer` output with its input (the `stem` output), last epoch",
                     cka_pair("stem", "mixer"), "attention_net", "conv_net", +1)]
    rows = [("CKA `stem` vs `mixer` (the mixer's input and output)", cka_pair("stem", "mixer")),
            ("CKA first vs last probed layer (`stem` vs `head`)", cka_between(ANY_LAYER, "ends")),
            ("CKA of each layer with itself at epoch 0, mean", cka_settled(ANY_LAYER))]
    return ["### attention_vs_conv_digits: attacks and CKA (last epoch)", "", *attack_table(runs), "",
            *probed_numbers_table(rows, runs), "", "Claims (A = attention_net, B = conv_net):", "",
            *claims_table(claims, runs)]


def vit_vs_resnet_probed(numbers: StudyNumbers) -> list[str]:
    runs = numbers.runs
    claims = attack_claims("ViT more robust in adversarial tasks", "vit_mini", "resnet18")
    claims += [Claim("ViT representations more uniform across depth (Raghu et al. 2021)",
                     "linear CKA between the first and the last residual block's outputs, last epoch",
                     cka_between(RESIDUAL_BLOCK, "ends"), "vit_mini", "resnet18", +1),
               Claim("ViT representations more uniform across depth (Raghu et al. 2021)",
                     "linear CKA of each residual block's output with the next block's, mean, last epoch",
                     cka_between(RESIDUAL_BLOCK, "neighbours"), "vit_mini", "resnet18", +1)]
    rows = [("CKA first vs last block", cka_between(RESIDUAL_BLOCK, "ends")),
            ("CKA block vs next block, mean", cka_between(RESIDUAL_BLOCK, "neighbours")),
            ("CKA of each block with itself at epoch 0, mean", cka_settled(RESIDUAL_BLOCK))]
    return ["### vit_vs_resnet_digits: attacks and CKA (last epoch)", "", *attack_table(runs), "",
            *probed_numbers_table(rows, runs), "", "Claims (A = vit_mini, B = resnet18):", "",
            *claims_table(claims, runs)]


def metric_attention_probed(numbers: StudyNumbers) -> list[str]:
    runs = numbers.runs
    tables = ["### metric_attention_digits: attacks (last epoch)", "", *attack_table(runs)]
    for score in ("shared_metric", "two_projection"):
        tables += ["", f"A = {score}, B = dot:", "",
                   *claims_table(attack_claims("metric-attention more robust (adversarial)", score, "dot"), runs)]
    return tables


def probed_numbers_table(rows: Sequence[tuple[str, Measure]], runs: dict[str, list[Run]]) -> list[str]:
    """One row per quantity, one column per variant (last probed epoch)."""
    lines = ["| quantity | " + " | ".join(runs) + " |", "| --- |" + " --- |" * len(runs)]
    for label, measure in rows:
        lines.append(f"| {label} | " + " | ".join(spread([measure(run) for run in variant_runs])
                                                 for variant_runs in runs.values()) + " |")
    return lines


@dataclass(frozen=True)
class Study:
    """A study's variants, its tables and the sweeps they read (:class:`StudyNumbers`)."""

    variants: tuple[str, ...]
    tables: Callable[[StudyNumbers], list[str]]
    sweeps: tuple[str, ...] = ()
    read_shipped: Optional[Callable[[Path], StudyNumbers]] = None
    """For a study whose own script writes its data file: the reader of that file (no runs)."""
    source: Optional[str] = None
    """For numbers ``probe.py`` computed later on another study's runs (report
    ``<reports_dir>/<name>/``): that study, whose run directories and names it reads."""


STUDIES = {
    "attention_vs_conv_digits": Study(("attention_net", "conv_net"), attention_vs_conv),
    "vit_vs_resnet_digits": Study(("vit_mini", "resnet18"), vit_vs_resnet),
    "metric_attention_digits": Study(("dot", "shared_metric", "two_projection"), metric_attention),
    "cct_digits": Study(("cct_2_3x1_16",), single_node,
                        tuple(threshold_sweep_name(t) for t in THRESHOLDS if t != 0.3)),
    "stiffness_digits": Study(("none", "se", "step"), stiffness),
    "convex_heads": Study(CONVEX_HEADS, convex_heads, read_shipped=read_convex_heads),
    "attention_vs_conv_digits_probed": Study(("attention_net", "conv_net"), attention_vs_conv_probed,
                                             source="attention_vs_conv_digits"),
    "vit_vs_resnet_digits_probed": Study(("vit_mini", "resnet18"), vit_vs_resnet_probed,
                                         source="vit_vs_resnet_digits"),
    "metric_attention_digits_probed": Study(("dot", "shared_metric", "two_projection"), metric_attention_probed,
                                            source="metric_attention_digits"),
}
DATA_DIR = Path(__file__).parent / "results" / "data"
RESULTS_MD = Path(__file__).parent / "results.md"


def verdict_counts(tables: dict[str, list[str]]) -> list[str]:
    """One row per study: how many claims got each verdict (fragile counts as inconclusive)."""
    kinds = ("agree", "disagree", "inconclusive", "fragile")
    lines = ["| study | claims | agree | disagree | inconclusive (of which fragile) |",
             "| --- | --- | --- | --- | --- |"]
    for study, lines_of_study in tables.items():
        found = [match.group(1) for line in lines_of_study if (match := re.search(r"\| \*\*(\w+)\*\* \|$", line))]
        count = {kind: found.count(kind) for kind in kinds}
        lines.append(f"| {study} | {len(found)} | {count['agree']} | {count['disagree']} "
                     f"| {count['inconclusive'] + count['fragile']} ({count['fragile']}) |")
    return lines


def table_blocks(lines: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The markdown tables in ``lines``, each with its caption: the last non-table line before it."""
    blocks: list[tuple[str, list[str]]] = []
    caption, current = "", []
    for line in [*lines, ""]:
        if line.startswith("|"):
            current.append(line)
            continue
        if current:
            blocks.append((caption, current))
            current = []
        if line.strip():
            caption = line.strip()
    return blocks


def check(tables: dict[str, list[str]], document: str) -> list[str]:
    """Each table of ``tables`` that does not appear verbatim in ``document``, as
    "<study>: table after '<caption>'" with the first line that differs."""
    present = {line for line in document.splitlines() if line.startswith("|")}
    problems = []
    for study, lines in tables.items():
        for caption, block in table_blocks(lines):
            if "\n".join(block) not in document:
                first = next((line for line in block if line not in present), block[0])
                problems.append(f"{study}: table after {caption!r} differs from the data; "
                                f"expected the row\n    {first}")
    return problems


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", type=Path, default=DATA_DIR,
                        help="the shipped per-seed numbers (default: %(default)s)")
    parser.add_argument("--from_runs", action="store_true",
                        help="read --runs_dir and --reports_dir instead of --data_dir")
    parser.add_argument("--runs_dir", type=Path, default=Path("runs"))
    parser.add_argument("--reports_dir", type=Path, default=Path("reports"))
    parser.add_argument("--write_data", action="store_true",
                        help="with --from_runs: write the numbers the tables use to --data_dir")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 where --results_md differs from the tables of the data")
    parser.add_argument("--results_md", type=Path, default=RESULTS_MD)
    parser.add_argument("--studies", nargs="+", choices=list(STUDIES), help="default: every study")
    args = parser.parse_args(argv)
    if args.write_data and not args.from_runs:
        parser.error("--write_data writes what --from_runs read: give both")
    tables, unshipped = {}, []
    for name in args.studies or list(STUDIES):
        study = STUDIES[name]
        shipped = args.data_dir / f"{'convex_heads' if study.read_shipped else name}.csv"
        if not args.from_runs and not shipped.is_file():
            unshipped.append(name)
            continue
        if study.read_shipped:
            numbers = study.read_shipped(args.data_dir)
        elif args.from_runs:
            numbers = read_study(name, study.variants, study.sweeps, args.runs_dir, args.reports_dir, study.source)
        else:
            numbers = read_study_data(name, study.variants, study.sweeps, args.data_dir, study.source)
        tables[name] = study.tables(numbers)
        if args.write_data and not study.read_shipped:
            write_data(name, numbers, args.data_dir)
    summary = ["### Verdicts per study (fragile counts as inconclusive)", "", *verdict_counts(tables)]
    if unshipped:
        print(f"no per-seed numbers in {args.data_dir} for {', '.join(unshipped)}: their tables are not "
              "derived (rerun the study, then --from_runs --write_data)", file=sys.stderr)
    if not args.check:
        print("\n\n".join("\n".join(lines) for lines in [*tables.values(), summary]))
        return 0
    problems = check({**tables, "summary": summary}, args.results_md.read_text())
    for problem in problems:
        print(f"{args.results_md}: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.results_md}: every table and verdict of {', '.join(tables)} equals what {args.data_dir} gives")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
