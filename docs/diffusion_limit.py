"""The diffusion limit of metric-attention (arXiv 2412.18288), checked numerically.

    OMP_NUM_THREADS=1 python docs/diffusion_limit.py                      # circle and 2-sphere
    OMP_NUM_THREADS=1 python docs/diffusion_limit.py --checkpoints \\
        runs/metric_attention_digits/shared_metric-seed0/checkpoints/last.ckpt \\
        runs/metric_attention_digits/two_projection-seed0/checkpoints/last.ckpt    # + learned metrics

The claim, the derivation of its constant c = 1/4 and of the error's rates are in
``docs/diffusion_maths.py`` (the pure functions this script calls). Here:

1. Circle (p ~ 1 + 0.5 cos theta, H = cos 2 theta, sin theta) and 2-sphere (p ~ 1 + 0.5 z,
   H = z, x y): the relative RMS error of the softmax generator (P_eps H - H) / eps against
   c (Lap H + 2 grad log p . grad H) for n in :data:`NS` (seeds :data:`SEEDS`, errors pooled as
   RMS over seeds) and eps in :data:`EPS`, and of the continuum operator (n = 0 in the CSV:
   quadrature, the bias alone). Fitted: the bias's slope in eps (theory 1), c by least squares
   at the smallest eps, the variance's powers of eps and n (theory -(m/2 + 1)/2 and -1/2) on the
   errors at least :data:`VARIANCE_FACTOR` times the bias, and the slope in n of the best error
   over eps (theory -1/(m/2 + 3)).
2. With ``--checkpoints`` (runs of ``configs/metric_attention_digits.yaml`` with score
   ``shared_metric`` or ``two_projection``): per block and head, the score's projections, the
   paper's assumptions on real tokens (the attention inputs of :data:`TOKEN_IMAGES` validation
   digits) and the generator on a circle in the tokens' top-2 principal plane (radius: the RMS
   of the two principal standard deviations) with the kernel exp(-||W_q x - W_k y||^2 / eps),
   eps = eps_rel times the mean squared speed of the circle under W_k, against the drift-diffusion
   of the metric W_k^T W_k (exact for ``shared_metric``, where W_q = W_k = W).

Outputs: ``docs/results/data/diffusion_limit.csv`` (case, test_function, n, eps, metric, value),
``docs/results/data/diffusion_limit_learned.csv`` (score, block, head, eps_rel, metric, value),
``docs/results/diffusion_limit.png``; the fitted rates are printed as markdown.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from pathlib import Path

import numpy as np
from diffusion_maths import (
    C_THEORY,
    CIRCLE_TESTS,
    SPHERE_TESTS,
    circle_continuum,
    circle_grid,
    circle_points,
    circle_reference,
    circle_tests,
    curve_operator,
    ellipse_speed,
    fitted_constant,
    generator,
    kernel_generator,
    log_slope,
    metric_assumptions,
    relative_rms,
    sample_circle,
    sample_sphere,
    sphere_continuum,
    sphere_reference,
    sphere_tests,
    sq_dists,
)

NS = (250, 500, 1000, 2000, 4000)
SEEDS = (0, 1, 2)
EPS = {"circle": np.geomspace(1e-4, 0.3, 13), "sphere": np.geomspace(1e-3, 0.3, 11)}
DIMENSION = {"circle": 1, "sphere": 2}
QUADRATURE_TARGETS = 400
VARIANCE_FACTOR = 2.0
MIN_NEIGHBOURS = 20.0
"""The noise's rate is fitted where the error exceeds the bias by VARIANCE_FACTOR and the kernel
has MIN_NEIGHBOURS neighbours (see :func:`rates`)."""
TOKEN_IMAGES = 64
LEARNED_SAMPLES = 2000
LEARNED_SAMPLED_EPS = 0.04
"""One sampled check per learned head: n = 2000 points, eps_rel = 0.04 (near the best eps of the
unit circle at n = 2000; its error there is 0.35 for H = cos 2 theta)."""
ROOT = Path(__file__).resolve().parent
DATA = ROOT / "results" / "data"
FIGURE = ROOT / "results" / "diffusion_limit.png"


# --- the manifolds ---------------------------------------------------------------------------------

def manifold_case(case: str, n: int, rng: np.random.Generator):
    """Sample points (n, D), H there (n, 2) and the reference operator (n, 2) of ``case``."""
    if case == "circle":
        theta = sample_circle(n, rng)
        return circle_points(theta), circle_tests(theta)[0], circle_reference(theta)
    x = sample_sphere(n, rng)
    return x, sphere_tests(x), sphere_reference(x)


def sweep(case: str) -> list[dict]:
    """Relative RMS error and fitted c of the generator for every n (0: the continuum) and eps."""
    rows = []
    tests = CIRCLE_TESTS if case == "circle" else SPHERE_TESTS
    if case == "circle":
        targets = sample_circle(QUADRATURE_TARGETS, np.random.default_rng(0))
        continuum, ref = (lambda eps: circle_continuum(targets, eps)), circle_reference(targets)
    else:
        targets = sample_sphere(QUADRATURE_TARGETS, np.random.default_rng(0))
        continuum, ref = (lambda eps: sphere_continuum(targets, eps)), sphere_reference(targets)
    for eps in EPS[case]:
        est = continuum(eps)
        for f, name in enumerate(tests):
            rows.append(dict(case=case, test_function=name, n=0, eps=eps,
                             rel_error=relative_rms(est, C_THEORY * ref)[f], c_fit=fitted_constant(est, ref)[f]))
    for n in NS:
        sq_err = np.zeros((len(EPS[case]), 2))
        for seed in SEEDS:
            x, h, ref_x = manifold_case(case, n, np.random.default_rng(seed))
            sq = sq_dists(x, x)
            for e, eps in enumerate(EPS[case]):
                sq_err[e] += relative_rms(kernel_generator(sq, h, h, eps), C_THEORY * ref_x) ** 2 / len(SEEDS)
        for e, eps in enumerate(EPS[case]):
            for f, name in enumerate(tests):
                rows.append(dict(case=case, test_function=name, n=n, eps=eps, rel_error=math.sqrt(sq_err[e, f])))
    return rows


def neighbours(case: str, n: int, eps: float) -> float:
    """The kernel's mass over the sample, n (pi eps)^(m/2) / vol(M) at the mean density: its neighbours."""
    return n * (math.pi * eps) ** (DIMENSION[case] / 2) / (2 * math.pi if case == "circle" else 4 * math.pi)


def rates(rows: list[dict], case: str, test: str) -> dict:
    """The fitted rates of one case and test function (see the module docstring for the theory).

    The noise of a sampled error is sqrt(error^2 - bias^2) (the bias from the continuum), fitted as
    A eps^a n^b on the points where the kernel has at least :data:`MIN_NEIGHBOURS` neighbours
    (fewer: most points see no other, their generator is 0, and the error is not yet a variance)
    and the error is at least :data:`VARIANCE_FACTOR` times the bias.
    """
    quad = sorted((r for r in rows if r["case"] == case and r["test_function"] == test and r["n"] == 0),
                  key=lambda r: r["eps"])
    bias = {r["eps"]: r["rel_error"] for r in quad}
    sampled = [r for r in rows if r["case"] == case and r["test_function"] == test and r["n"] > 0]
    noisy = [r for r in sampled if r["rel_error"] > VARIANCE_FACTOR * bias[r["eps"]]
             and neighbours(case, r["n"], r["eps"]) >= MIN_NEIGHBOURS]
    design = np.stack([np.log([r["eps"] for r in noisy]), np.log([r["n"] for r in noisy]), np.ones(len(noisy))], 1)
    noise = [math.sqrt(r["rel_error"] ** 2 - bias[r["eps"]] ** 2) for r in noisy]
    eps_power, n_power, _ = np.linalg.lstsq(design, np.log(noise), rcond=None)[0]
    best = {n: min(r["rel_error"] for r in sampled if r["n"] == n) for n in NS}
    return dict(bias_slope=log_slope([r["eps"] for r in quad], [r["rel_error"] for r in quad]),
                c_fit_smallest_eps=quad[0]["c_fit"], bias_at_smallest_eps=quad[0]["rel_error"],
                smallest_eps=quad[0]["eps"], variance_eps_power=eps_power, variance_n_power=n_power,
                variance_points=len(noisy), best_error_n_slope=log_slope(list(best), list(best.values())),
                best_error_at_max_n=best[max(NS)])


# --- the learned metrics ---------------------------------------------------------------------------

def attention_inputs(checkpoint: Path) -> tuple[str, list, list[np.ndarray]]:
    """The score, every block's attention module and its input tokens (B, N, C) on validation digits."""
    import torch

    from attnconv_pl.data import DigitsDataModule
    from attnconv_pl.offline.checkpoints import build_module, read_checkpoint

    content = read_checkpoint(checkpoint)
    model = build_module(content, checkpoint).model.eval()
    data_options = {k: v for k, v in content["datamodule_hyper_parameters"].items() if not k.startswith("_")}
    data = DigitsDataModule(**data_options)
    data.setup("validate")
    images = torch.stack([data.val_dataset[i][0] for i in range(TOKEN_IMAGES)])
    attentions = [block.attn for block in model.blocks]
    tokens: list[np.ndarray] = []
    hooks = [attn.register_forward_pre_hook(lambda _m, args: tokens.append(args[0].double().numpy()))
             for attn in attentions]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return attentions[0].score, attentions, tokens


def head_projections(attn, head: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """W_q, W_k (d_h, C) and b_q, b_k (d_h,) of one head's score (W_q = W_k, no bias: shared metric)."""
    rows = slice(head * attn.head_dim, (head + 1) * attn.head_dim)
    width = attn.proj.in_features
    if attn.score == "shared_metric":
        w = attn.metric.weight.detach().double().numpy()[rows]
        return w, w, np.zeros(len(w)), np.zeros(len(w))
    weight = attn.qkv.weight.detach().double().numpy()
    bias = attn.qkv.bias.detach().double().numpy() if attn.qkv.bias is not None else np.zeros(3 * width)
    return weight[rows], weight[width:][rows], bias[rows], bias[width:][rows]


def learned_circle(w_q, w_k, b_q, b_k, tokens: np.ndarray, tau: float) -> tuple[list[dict], dict]:
    """The generator on a circle in the tokens' top-2 principal plane with the learned score.

    Returns:
        the relative error per eps_rel (continuum, :data:`EPS` of the circle) and scalars: the
        error of one sampled check, the model's tau in eps_rel units, and for W_q != W_k the
        error of eps (P_eps H - H) against H(theta*) - H(theta) (theta* the angle whose key is
        nearest the query: the eps -> 0 limit) at the smallest eps, and the mean |theta* - theta|.
    """
    flat = tokens.reshape(-1, tokens.shape[-1])
    centre = flat.mean(0)
    _, sv, vt = np.linalg.svd(flat - centre, full_matrices=False)
    radius = math.sqrt((sv[0] ** 2 + sv[1] ** 2) / 2 / len(flat))
    u1, u2 = vt[0], vt[1]

    def embed(theta):
        return centre + radius * (np.cos(theta)[:, None] * u1 + np.sin(theta)[:, None] * u2)

    grid, weights = circle_grid()
    scale = ellipse_speed(grid, radius * w_k @ u1, radius * w_k @ u2)[0].mean()
    targets = sample_circle(QUADRATURE_TARGETS, np.random.default_rng(0))
    speed_sq, speed_sq_d = ellipse_speed(targets, radius * w_k @ u1, radius * w_k @ u2)
    _, h1, h2 = circle_tests(targets)
    ref = np.stack([curve_operator(targets, h1[:, f], h2[:, f], speed_sq, speed_sq_d) for f in range(2)], 1)
    q_t, k_g = embed(targets) @ w_q.T + b_q, embed(grid) @ w_k.T + b_k
    sq = sq_dists(q_t, k_g)
    h_t, h_g = circle_tests(targets)[0], circle_tests(grid)[0]
    rows = [dict(eps_rel=eps, rel_error=relative_rms(kernel_generator(sq, h_g, h_t, eps * scale, weights),
                                                     C_THEORY * ref)[0]) for eps in EPS["circle"]]
    theta = sample_circle(LEARNED_SAMPLES, np.random.default_rng(0))
    speed_sq, speed_sq_d = ellipse_speed(theta, radius * w_k @ u1, radius * w_k @ u2)
    _, s1, s2 = circle_tests(theta)
    sampled = generator(embed(theta) @ w_q.T + b_q, embed(theta) @ w_k.T + b_k, circle_tests(theta)[0],
                        circle_tests(theta)[0], LEARNED_SAMPLED_EPS * scale)
    scalars = dict(sampled_rel_error=relative_rms(sampled[:, :1], C_THEORY * curve_operator(
        theta, s1[:, 0], s2[:, 0], speed_sq, speed_sq_d)[:, None])[0], model_eps_rel_circle=tau / scale)
    if not np.array_equal(w_q, w_k) or not np.array_equal(b_q, b_k):
        nearest = grid[sq.argmin(1)]
        jump = circle_tests(nearest)[0] - h_t
        eps = EPS["circle"][0]
        scalars["jump_rel_error"] = relative_rms(eps * scale * kernel_generator(sq, h_g, h_t, eps * scale, weights),
                                                 jump)[0]
        scalars["mean_jump_angle"] = np.abs(np.angle(np.exp(1j * (nearest - targets)))).mean()
    return rows, scalars


def learned_rows(checkpoint: Path) -> list[dict]:
    """Every head's assumptions and circle check (``metric_assumptions``, :func:`learned_circle`)."""
    score, attentions, tokens = attention_inputs(checkpoint)
    rows = []
    for block, (attn, x) in enumerate(zip(attentions, tokens)):
        for head in range(attn.num_heads):
            projections = head_projections(attn, head)
            tau = float(attn.tau)
            scalars = metric_assumptions(*projections, x, tau, np.random.default_rng(block))
            sweep_rows, circle_scalars = learned_circle(*projections, x, tau)
            key = dict(score=score, block=block, head=head)
            rows += [key | dict(eps_rel="", metric=m, value=v) for m, v in (scalars | circle_scalars).items()]
            rows += [key | dict(eps_rel=r["eps_rel"], metric="rel_error", value=r["rel_error"]) for r in sweep_rows]
    return rows


# --- outputs ---------------------------------------------------------------------------------------

def write_csv(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """Write ``rows`` (dicts with ``columns``) as a CSV, atomically."""
    from attnconv_pl.io.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: f"{v:.6g}" if isinstance(v, (float, np.floating)) else v for k, v in r.items()}
                     for r in rows)
    atomic_write_text(path, buffer.getvalue())


def long_rows(rows: list[dict]) -> list[dict]:
    """The sweep's rows in the long form of the CSV (one metric per row)."""
    return [dict(case=r["case"], test_function=r["test_function"], n=r["n"], eps=r["eps"], metric=m, value=r[m])
            for r in rows for m in ("rel_error", "c_fit") if m in r]


def rates_markdown(fits: dict) -> str:
    """The fitted rates as a markdown table."""
    lines = ["| case | H | bias slope in eps (theory 1) | c fitted at smallest eps (theory 0.25) | "
             "variance: power of eps, of n (theory -(m/2+1)/2, -1/2) | best error over eps: slope in n "
             "(theory -1/(m/2+3)) | best error at n = 4000 |", "|---|---|---|---|---|---|---|"]
    for (case, test), f in fits.items():
        m = DIMENSION[case]
        lines.append(
            f"| {case} | {test} | {f['bias_slope']:.3f} "
            f"| {f['c_fit_smallest_eps']:.5f} (eps = {f['smallest_eps']:.0e}) "
            f"| {f['variance_eps_power']:.2f} ({-(m / 2 + 1) / 2:.2f}), {f['variance_n_power']:.2f} (-0.5); "
            f"{f['variance_points']} points | {f['best_error_n_slope']:.3f} ({-1 / (m / 2 + 3):.3f}) "
            f"| {f['best_error_at_max_n']:.3f} |")
    return "\n".join(lines)


LEARNED_COLUMNS = ("asymmetry", "self_distance_ratio", "triangle_violations", "null_dimensions",
                   "token_spacing_over_tau", "model_eps_rel_circle", "slope", "error_at_smallest_eps",
                   "sampled_rel_error", "jump_rel_error", "mean_jump_angle")
"""slope: of the continuum error against eps_rel over eps_rel <= 0.01 (1: converges like the
Euclidean circle; < 0: diverges); the others: ``metric_assumptions`` and :func:`learned_circle`."""


def learned_markdown(learned: list[dict]) -> str:
    """Per score: the median and range over blocks and heads of :data:`LEARNED_COLUMNS`."""
    per_head: dict = {}
    for r in learned:
        head = per_head.setdefault((r["score"], r["block"], r["head"]), {"sweep": []})
        if r["metric"] == "rel_error":
            head["sweep"].append((r["eps_rel"], r["value"]))
        else:
            head[r["metric"]] = r["value"]
    for head in per_head.values():
        sweep_points = sorted(p for p in head.pop("sweep") if p[0] <= 1e-2)
        head["slope"] = log_slope(*map(np.array, zip(*sweep_points)))
        head["error_at_smallest_eps"] = sweep_points[0][1]
    lines = ["| score | " + " | ".join(LEARNED_COLUMNS) + " |", "|---" * (len(LEARNED_COLUMNS) + 1) + "|"]
    for score in sorted({key[0] for key in per_head}):
        cells = []
        for column in LEARNED_COLUMNS:
            values = [h[column] for key, h in per_head.items() if key[0] == score and column in h]
            cells.append(f"{np.median(values):.3g} ({min(values):.3g} to {max(values):.3g})" if values else "")
        lines.append(f"| {score} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def figure(rows: list[dict], fits: dict, learned: list[dict], path: Path) -> None:
    """Error against eps per n (circle, sphere) and the learned metrics' continuum error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from attnconv_pl.reports.figures import save_figure

    panels = 3 if learned else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.4))
    for ax, (case, test) in zip(axes, (("circle", "cos2theta"), ("sphere", "xy"))):
        sel = [r for r in rows if r["case"] == case and r["test_function"] == test]
        for n in (0, *NS):
            line = sorted((r["eps"], r["rel_error"]) for r in sel if r["n"] == n)
            style = dict(color="black", ls="--", label="n = inf (quadrature)") if n == 0 else \
                dict(marker="o", ms=3, label=f"n = {n}")
            ax.loglog(*zip(*line), **style)
        f, m = fits[(case, test)], DIMENSION[case]
        ax.set_title(f"{case} (m = {m}), H = {test}\nagainst (1/4) (Lap H + 2 grad log p . grad H)", fontsize=10)
        ax.text(0.03, 0.03, f"bias ~ eps^{f['bias_slope']:.2f}, c = {f['c_fit_smallest_eps']:.4f}\n"
                f"noise ~ eps^{f['variance_eps_power']:.2f} n^{f['variance_n_power']:.2f} "
                f"(theory {-(m / 2 + 1) / 2:.2f}, -0.50)\nbest over eps ~ n^{f['best_error_n_slope']:.2f} "
                f"(theory {-1 / (m / 2 + 3):.2f})", transform=ax.transAxes, fontsize=8, va="bottom")
        ax.set_xlabel("eps")
        ax.set_ylabel("relative RMS error of (P_eps H - H) / eps")
        ax.legend(fontsize=7, loc="upper right")
    if learned:
        ax = axes[2]
        unit = sorted((r["eps"], r["rel_error"]) for r in rows
                      if r["case"] == "circle" and r["test_function"] == "cos2theta" and r["n"] == 0)
        ax.loglog(*zip(*unit), color="black", ls="--", label="unit circle, Euclidean")
        colours = {"shared_metric": "tab:blue", "two_projection": "tab:red"}
        heads = sorted({(r["score"], r["block"], r["head"]) for r in learned})
        for score, block, head in heads:
            line = sorted((r["eps_rel"], r["value"]) for r in learned if (r["score"], r["block"], r["head"]) ==
                          (score, block, head) and r["metric"] == "rel_error")
            first = (block, head) == (0, 0)
            ax.loglog(*zip(*line), color=colours[score], lw=0.8, alpha=0.7, label=score if first else None)
        ax.set_title("learned metric g = W^T W, circle in token space, n = inf, H = cos 2 theta\n"
                     "against (1/4) (Lap_g H + 2 <grad_g log q, grad_g H>_g), q = p / s", fontsize=8.5)
        model_eps = np.median([r["value"] for r in learned if r["metric"] == "model_eps_rel_circle"])
        ax.axvline(model_eps, color="grey", ls=":", label=f"the models' tau (median, {model_eps:.2g})")
        ax.set_xlabel("eps / mean squared speed of the circle under W_k")
        ax.set_ylabel("relative RMS error of (P_eps H - H) / eps")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="*", type=Path, default=[],
                        help="train.py checkpoints of metric-attention runs (shared_metric, two_projection)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the CSVs")
    parser.add_argument("--figure", type=Path, default=FIGURE, help="the PNG")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = sweep("circle") + sweep("sphere")
    fits = {(case, test): rates(rows, case, test)
            for case, tests in (("circle", CIRCLE_TESTS), ("sphere", SPHERE_TESTS)) for test in tests}
    write_csv(args.data / "diffusion_limit.csv", long_rows(rows),
              ("case", "test_function", "n", "eps", "metric", "value"))
    print(rates_markdown(fits))
    learned = [row for checkpoint in args.checkpoints for row in learned_rows(checkpoint)]
    if learned:
        write_csv(args.data / "diffusion_limit_learned.csv", learned,
                  ("score", "block", "head", "eps_rel", "metric", "value"))
        print(learned_markdown(learned))
    figure(rows, fits, learned, args.figure)
    print(f"\n{time.perf_counter() - start:.0f} s; wrote {args.figure} and the CSVs in {args.data}", file=sys.stderr)


if __name__ == "__main__":
    main()
