"""The tables of docs/results.md, from the runs and reports of the three digits studies.

    python -m attnconv_pl.study --config configs/studies/attention_vs_conv_digits.yaml --seeds 0 1 2
    python -m attnconv_pl.study --config configs/studies/vit_vs_resnet_digits.yaml --seeds 0 1 2
    python -m attnconv_pl.study --config configs/studies/metric_attention_digits.yaml --seeds 0 1 2
    python docs/results_tables.py [--runs_dir runs] [--reports_dir reports]

Reads ``<runs_dir>/<study>/<variant>-seed<N>/dynamics.csv`` (the numbers the training callback
probed), ``.../metrics.csv`` (training records) and ``<reports_dir>/<study>/summary.json``
(accuracy under input noise, ``probe.py --robustness``), and prints markdown: per study the
numbers of each variant as mean ± sample standard deviation over the seeds, then the claims of
the papers' claims (arXiv 2410.17628, 2412.18288) with a verdict by :func:`verdict`.

Verdict rule (fixed before the runs): for a claim "A < B" (or "A > B") the differences
d_s = A_s - B_s are paired by seed s (same seed, same data split, same probe set);
*agree*: every d_s has the claimed sign and |mean(d)| > 2 sd(d); *disagree*: every d_s has the
opposite sign and |mean(d)| > 2 sd(d); *inconclusive*: anything else (a missing number too).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

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


@dataclass
class Run:
    """One trained run: its probed numbers, training rows and (when measured) noise accuracy.

    Attributes:
        values: ``{(epoch, layer, metric): value}`` from ``dynamics.csv``.
        metrics: rows of ``metrics.csv`` in epoch order.
        robustness: ``summary.json``'s ``robustness`` entry of the run, or None.
    """

    name: str
    variant: str
    values: dict[tuple[int, str, str], float]
    metrics: list[dict[str, float]]
    robustness: Optional[dict]

    @property
    def last_epoch(self) -> int:
        return max(epoch for epoch, _, _ in self.values)

    def layers(self) -> list[str]:
        """Probed layers in depth order (the order of their first rows in ``dynamics.csv``)."""
        return list(dict.fromkeys(layer for _, layer, _ in self.values if layer))

    def value(self, epoch: int, layer: str, metric: str) -> float:
        return self.values.get((epoch, layer, metric), math.nan)


def read_run(run_dir: Path, variant: str, summary: dict) -> Run:
    """A run of ``variant`` from its directory and its study's ``summary.json`` (``{}`` when there is none)."""
    with (run_dir / "dynamics.csv").open(newline="") as handle:
        values = {(int(row["epoch"]), row["layer"], row["metric"]): float(row["value"] or "nan")
                  for row in csv.DictReader(handle)}
    label = f"{run_dir.parent.name}/{run_dir.name}"
    entry = next((run for run in summary.get("runs", []) if run["label"] == label), {})
    return Run(label, variant, values, read_metrics(run_dir / "metrics.csv"), entry.get("robustness"))


def read_study(study: str, variants: Sequence[str], runs_dir: Path, reports_dir: Path) -> dict[str, list[Run]]:
    """``{variant: [run of each seed in SEEDS]}``."""
    summary_path = reports_dir / study / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return {variant: [read_run(runs_dir / study / f"{variant}-seed{seed}", variant, summary) for seed in SEEDS]
            for variant in variants}


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


def verdict(differences: Sequence[float], claimed_sign: int) -> str:
    """The verdict of a claim from the paired differences A_s - B_s (module docstring);
    ``claimed_sign`` is -1 for "A < B" and +1 for "A > B"."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or np.isnan(d).any():
        return "inconclusive"
    clear = abs(d.mean()) > 2 * d.std(ddof=1)
    if clear and (np.sign(d) == claimed_sign).all():
        return "agree"
    if clear and (np.sign(d) == -claimed_sign).all():
        return "disagree"
    return "inconclusive"


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
    """A claim "``a`` < ``b``" (``claimed_sign`` -1) or "``a`` > ``b``" (+1) about ``measure``."""

    text: str
    compared: str
    measure: Measure
    a: str
    b: str
    claimed_sign: int
    scale: float = 1.0


def claim_row(claim: Claim, runs: dict[str, list[Run]]) -> str:
    a = [claim.measure(run) for run in runs[claim.a]]
    b = [claim.measure(run) for run in runs[claim.b]]
    d = [x - y for x, y in zip(a, b)]
    decimals = decimals_for(float(np.std(d, ddof=1)) * claim.scale)
    per_seed = ", ".join(number(x * claim.scale, decimals) for x in d)
    return (f"| {claim.text} | {claim.compared} | {spread(a, claim.scale)} | {spread(b, claim.scale)} "
            f"| {per_seed} | {spread(d, claim.scale)} | **{verdict(d, claim.claimed_sign)}** |")


def claims_table(claims: Sequence[Claim], runs: dict[str, list[Run]]) -> list[str]:
    return ["| claim (paper) | compared | A | B | A − B, seeds 0, 1, 2 | A − B | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- |",
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


def attention_vs_conv(runs: dict[str, list[Run]]) -> list[str]:
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


def vit_vs_resnet(runs: dict[str, list[Run]]) -> list[str]:
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


def metric_attention(runs: dict[str, list[Run]]) -> list[str]:
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


STUDIES = {
    "attention_vs_conv_digits": (("attention_net", "conv_net"), attention_vs_conv),
    "vit_vs_resnet_digits": (("vit_mini", "resnet18"), vit_vs_resnet),
    "metric_attention_digits": (("dot", "shared_metric", "two_projection"), metric_attention),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs_dir", type=Path, default=Path("runs"))
    parser.add_argument("--reports_dir", type=Path, default=Path("reports"))
    args = parser.parse_args()
    for study, (variants, tables) in STUDIES.items():
        print("\n".join(tables(read_study(study, variants, args.runs_dir, args.reports_dir))) + "\n")


if __name__ == "__main__":
    main()
