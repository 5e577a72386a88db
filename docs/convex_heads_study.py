"""Convex attention heads on the raw digits: accuracy of each head, global optimality of the
Burer-Monteiro fit, the rank of Z* against beta and the token groups an attention head induces,
over seeds 0, 1, 2; prints markdown, writes four figures and the per-seed numbers as a CSV.

    OMP_NUM_THREADS=1 python docs/convex_heads_study.py      # docs/results.md, section 6
    OMP_NUM_THREADS=1 python docs/convex_heads_study.py --figures DIR --csv FILE   # elsewhere

Each 8x8 digit is 8 tokens (its rows) of 8 pixels in [0, 1]. Per seed: a seeded 70/30
train/val split of the 1797 digits, every head fitted by :func:`attnconv_pl.heads.fit_head`
(squared loss, weight decay beta, full-batch L-BFGS, initialisation from the seed) until its
stopping criterion holds: a convex-capable head until its duality gap is at most
:data:`GAP_TOL` of its objective (within that distance of the global optimum), another head
until its objective falls by at most :data:`STALL_TOL` per iteration, relatively, over
:data:`STALL_EVERY` iterations; each within
a budget of :data:`STEPS` iterations (a fit that runs out is marked, and warns); and a small
instance (60 digits of classes 0-2, 2x2-pooled: 4 tokens of 4 pixels) on which the fit is
compared with :func:`attnconv_pl.heads.solve_convex` (CVXPY) and Z*'s rank is read per beta.
The verdicts of the claims (which head beats which) are not computed here: ``python
docs/results_tables.py --studies convex_heads`` derives them from the CSV by the rule of every
study (with its margin and fragile band).

The CSV (default ``docs/results/data/convex_heads.csv``) is long: columns
``study,variant,seed,epoch,layer,metric,value`` with study ``convex_heads``, variant the head
(or ``small_instance``), ``epoch`` and ``layer`` empty; metrics per head ``val_top1``,
``val_top5``, ``fit_seconds``, ``iterations``, ``converged`` (1/0), ``objective``,
``residual`` (relative duality gap, or relative decrease per iteration of a head without convex
form), and for the convex-capable heads ``duality_gap`` and ``rank``; per seed of the small
instance ``fit_minus_cvxpy_relative``, ``relative_gap``, ``fit_converged``, ``rank_fit``,
``rank_z_star``, ``cvxpy_converged``, and ``rank_z_star_beta=<beta>`` and
``cvxpy_converged_beta=<beta>`` for each beta of :data:`BETAS`.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from attnconv_pl.heads import fit_head, one_hot, solve_convex
from attnconv_pl.heads.figures import accuracy_figure, certificate_figure, rank_figure, token_figure
from attnconv_pl.heads.tokens import token_clusters, token_token_matrices
from attnconv_pl.io.atomic import atomic_write_text
from attnconv_pl.reports.figures import save_figure

SEEDS = (0, 1, 2)
HEADS = {"linear": {}, "mlp": {}, "attention": {}, "linear_attention": {"heads": 32},
         "gated_relu_attention": {"heads": 16, "gates": 8}}
"""Units: more than the fits use (rank 12 for linear_attention, 10-11 per gate for
gated_relu_attention; with 8 units per gate two seeds stopped at a gap of 2-3e-3)."""
CONVEX_HEADS = ("linear_attention", "gated_relu_attention")
BETA = 1e-3
STEPS = 4000
"""The budget of L-BFGS iterations of every fit (our choice; the mlp, the slowest, needs 2000-2600)."""
GAP_TOL = 1e-3
"""Relative duality gap that ends a convex-capable head's fit (our choice: the objective within
0.1% of the global optimum, far finer than the accuracy differences judged here; at fit_head's
default 1e-4 one linear_attention seed was still at 1.07e-4 after 4000 iterations)."""
STALL_TOL = 1e-7
"""Relative decrease of the objective per iteration that ends another head's fit (our choice:
1e-5 per 100 iterations; fit_head's default 1e-8 would keep the ReLU MLP creeping past 3000)."""
SMALL_GAP_TOL = 1e-6
SMALL_STEPS = 10000
"""The small instance's fit goes closer to the optimum, to be compared with CVXPY's (seed 2
needs 5900 iterations)."""
STUDY = "convex_heads"
CSV_COLUMNS = ("study", "variant", "seed", "epoch", "layer", "metric", "value")
BETAS = (1e-4, 1e-3, 1e-2, 1e-1)
CERTIFIED_EVERY = 20
"""L-BFGS iterations between two certificates of a convex-capable fit (points of its history)."""
STALL_EVERY = 100
"""L-BFGS iterations over which a head without convex form measures its decrease (fit_head's
default: a window long enough that a short flat stretch of L-BFGS is not taken for a stall)."""
TOKEN_CLASSES = (0, 3, 4, 7)
"""The classes of the validation digits whose token-token matrices are drawn (seed 0)."""
TOKEN_GROUPS = 3


def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as tokens (n, 8, 8) in [0, 1] and labels (n,)."""
    bunch = load_digits()
    return torch.tensor(bunch.images / 16.0), torch.tensor(bunch.target)


def split(n: int, seed: int, train_fraction: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and val indices of a seeded random split."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(train_fraction * n)
    return order[:cut], order[cut:]


def small_instance(tokens: torch.Tensor, labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """60 seeded digits of classes 0-2, 2x2-pooled to 4 tokens of 4 pixels, one-hot targets."""
    keep = torch.nonzero(labels < 3).squeeze(1)
    chosen = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(seed))[:60]]
    pooled = tokens[chosen].reshape(-1, 4, 2, 4, 2).mean(dim=(2, 4))
    return pooled, one_hot(labels[chosen], 3, torch.float64)


def accuracy(head: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor, top: int = 1) -> float:
    """Fraction of inputs whose label is among the head's ``top`` largest outputs."""
    with torch.no_grad():
        best = head(tokens.double()).topk(top, dim=1).indices
    return float((best == labels.unsqueeze(1)).any(dim=1).double().mean())


def token_panels(head: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor):
    """The first validation digit of each of ``TOKEN_CLASSES``: tokens, summed token-token
    matrices sum_j X A_j X^T and their token groups."""
    chosen = torch.stack([torch.nonzero(labels == c)[0, 0] for c in TOKEN_CLASSES])
    images = tokens[chosen].double()
    matrices = token_token_matrices(head, images).sum(dim=(1, 2))
    groups = [token_clusters(matrix, TOKEN_GROUPS) for matrix in matrices]
    return images.numpy(), matrices.numpy(), np.stack(groups)


def mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def write_csv(path: Path, rows: list[tuple]) -> None:
    """The long CSV of the module docstring, atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows((STUDY, variant, seed, "", "", metric, repr(float(value)))
                     for variant, seed, metric, value in rows)
    atomic_write_text(path, buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figures", type=Path, default=Path(__file__).parent / "results",
                        help="folder of the four convex_heads_*.png figures (default: docs/results)")
    parser.add_argument("--csv", type=Path, default=Path(__file__).parent / "results" / "data" / "convex_heads.csv",
                        help="the per-seed numbers (default: docs/results/data/convex_heads.csv)")
    arguments = parser.parse_args()
    figures_dir = arguments.figures
    figures_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tokens, labels = digits()
    val_acc = {head: [] for head in HEADS}
    val_top5 = {head: [] for head in HEADS}
    histories = {}
    seconds = {head: [] for head in HEADS}
    iterations = {head: [] for head in HEADS}
    converged = {head: [] for head in HEADS}
    optimality = []
    ranks = {beta: [] for beta in BETAS}
    rows: list[tuple] = []
    for seed in SEEDS:
        train, val = split(len(labels), seed)
        targets = one_hot(labels[train], 10, torch.float64)
        for head, options in HEADS.items():
            t0 = time.perf_counter()
            check_every = CERTIFIED_EVERY if head in CONVEX_HEADS else STALL_EVERY
            fit = fit_head(head, tokens[train], targets, BETA, steps=STEPS, gap_tol=GAP_TOL, stall_tol=STALL_TOL,
                           seed=seed, check_every=check_every, **options)
            seconds[head].append(time.perf_counter() - t0)
            val_acc[head].append(accuracy(fit.head, tokens[val], labels[val]))
            val_top5[head].append(accuracy(fit.head, tokens[val], labels[val], top=5))
            iterations[head].append(fit.iterations)
            converged[head].append(fit.converged)
            rows += [(head, seed, metric, value) for metric, value in (
                ("val_top1", val_acc[head][-1]), ("val_top5", val_top5[head][-1]), ("fit_seconds", seconds[head][-1]),
                ("iterations", fit.iterations), ("converged", fit.converged), ("objective", fit.objective),
                ("residual", fit.residual))]
            if fit.rank >= 0:
                rows += [(head, seed, "duality_gap", fit.duality_gap), (head, seed, "rank", fit.rank)]
            if head == "linear_attention":
                histories[f"seed {seed}"] = {"step": [i for i, _, _ in fit.history],
                                             "objective": [o for _, o, _ in fit.history],
                                             "duality_gap": [g for _, _, g in fit.history]}
                if seed == SEEDS[0]:
                    panels = token_panels(fit.head, tokens[val], labels[val])
        small, small_targets = small_instance(tokens, labels, seed)
        fit = fit_head("linear_attention", small, small_targets, BETA, seed=seed, gap_tol=SMALL_GAP_TOL,
                       steps=SMALL_STEPS)
        exact = solve_convex("linear_attention", small, small_targets, BETA)
        optimality.append(((fit.objective - exact.objective) / exact.objective, fit.duality_gap / fit.objective,
                           fit.rank, exact.rank))
        rows += [("small_instance", seed, metric, value) for metric, value in (
            ("fit_minus_cvxpy_relative", optimality[-1][0]), ("relative_gap", optimality[-1][1]),
            ("fit_converged", fit.converged), ("rank_fit", fit.rank), ("rank_z_star", exact.rank),
            ("cvxpy_converged", exact.converged))]
        for beta in BETAS:
            solution = solve_convex("linear_attention", small, small_targets, beta)
            ranks[beta].append(solution.rank)
            rows += [("small_instance", seed, f"rank_z_star_beta={beta:g}", solution.rank),
                     ("small_instance", seed, f"cvxpy_converged_beta={beta:g}", solution.converged)]
    arguments.csv.parent.mkdir(parents=True, exist_ok=True)
    write_csv(arguments.csv, rows)

    print(f"## Heads on raw digit rows (8 tokens x 8 pixels), seeds {', '.join(map(str, SEEDS))}\n")
    print(f"Squared loss, beta = {BETA}, 70/30 split per seed. Each fit runs until its criterion holds, within "
          f"{STEPS} L-BFGS iterations: a convex-capable head until its duality gap is <= {GAP_TOL:g} of its "
          f"objective, another until its objective falls by <= {STALL_TOL:g} per iteration (relative).\n")
    print("| head | val top-1 (mean ± sd) | val top-5 (mean ± sd) | L-BFGS iterations (mean) | converged | "
          "fit seconds (mean) |")
    print("|---|---|---|---|---|---|")
    for head in HEADS:
        print(f"| {head} | {mean_sd(val_acc[head])} | {mean_sd(val_top5[head])} | "
              f"{statistics.mean(iterations[head]):.0f} | {sum(converged[head])}/{len(SEEDS)} | "
              f"{statistics.mean(seconds[head]):.1f} |")
    drawn = {
        "accuracy": accuracy_figure({head: {"top-1": val_acc[head], "top-5": val_top5[head]} for head in HEADS}),
        "certificate": certificate_figure(histories, step_label="L-BFGS iterations"),
        "rank": rank_figure(ranks),
        "tokens": token_figure(*panels, titles=[f"digit {c}" for c in TOKEN_CLASSES]),
    }
    for name, figure in drawn.items():
        save_figure(figure, figures_dir / f"convex_heads_{name}.png")
    print("\n![accuracy per head](results/convex_heads_accuracy.png)\n")
    print(f"The certificate of linear_attention's fits, every {CERTIFIED_EVERY} L-BFGS iterations (an epoch of "
          "configs/convex_heads_digits.yaml is 50 iterations; its runs log the same numbers per epoch as "
          "certificate/*):\n")
    print("![objective and duality gap](results/convex_heads_certificate.png)\n")
    print("\n## Global optimality (linear_attention, 60 digits of classes 0-2, 4 tokens x 4 pixels)\n")
    print("| seed | (fit - CVXPY) / CVXPY objective | certificate duality_gap / objective | rank fit | rank Z* |")
    print("|---|---|---|---|---|")
    for seed, (gap, certificate, fit_rank, exact_rank) in zip(SEEDS, optimality):
        print(f"| {seed} | {gap:.2e} | {certificate:.2e} | {fit_rank} | {exact_rank} |")
    print("\n## Rank of Z* (solve_convex, linear_attention, small instance) against beta\n")
    print("| beta | rank Z* per seed | mean ± sd |")
    print("|---|---|---|")
    for beta in BETAS:
        print(f"| {beta:g} | {', '.join(map(str, ranks[beta]))} | {mean_sd([float(r) for r in ranks[beta]])} |")
    print("\n![rank of Z* against beta](results/convex_heads_rank.png)\n")
    print(f"Token-token matrices sum_j X A_j X^T of seed {SEEDS[0]}'s linear_attention head (32 units) on one "
          f"validation digit per class {', '.join(map(str, TOKEN_CLASSES))}, and the {TOKEN_GROUPS} token groups "
          "that spectral clustering of |M + M^T| / 2 finds:\n")
    print("![token-token matrices](results/convex_heads_tokens.png)")
    print(f"\nPer-seed numbers: {arguments.csv}; the verdicts: python docs/results_tables.py --studies convex_heads. "
          f"Total {time.perf_counter() - started:.0f} s.")


if __name__ == "__main__":
    main()
