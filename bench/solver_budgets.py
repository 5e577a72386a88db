"""What budget the iterative solvers of the probes need: the stiffness Lanczos runs and the exact W2
network simplex.

    python bench/solver_budgets.py lanczos runs/stiffness_digits/RUN/checkpoints/epoch=000.ckpt \
        --budgets 200 500 1500 [--inputs 2] [--tol 1e-3]
    python bench/solver_budgets.py simplex [--sizes 1000 2000] [--dim 1024]

``lanczos`` loads a resnet20 checkpoint of ``configs/stiffness_digits.yaml`` (digits at 16 px, no
attention), takes the first ``--inputs`` validation images and, per residual block, runs
``jacobian_singular_extremes`` at each budget: the fraction of inputs converged, and sigma_min and
sigma_max against those of the largest budget (the run with the same seed and more steps).
``simplex`` prints, for two independent Gaussian clouds and for a cloud against a slightly moved
copy, the fewest pivots (within 25 %) with which POT's network simplex reaches an optimal plan.
"""

import argparse
import time
import warnings

import numpy as np
import ot
import torch

from attnconv_pl.data import DigitsDataModule
from attnconv_pl.models import create_model
from attnconv_pl.probes.stiffness import jacobian_singular_extremes


def lanczos(checkpoint: str, budgets: list[int], inputs: int, tol: float) -> None:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = create_model("resnet20", num_classes=10, in_chans=1, img_size=16, attn="none")
    model.load_state_dict({key.removeprefix("model."): value for key, value in state["state_dict"].items()
                           if key.startswith("model.")})
    model.eval()
    data = DigitsDataModule(image_size=16, batch_size=64, num_workers=0, seed=0)
    data.setup("fit")
    images = next(iter(data.val_dataloader()))[0][:inputs]
    blocks = [name for name, module in model.named_modules()
              if hasattr(module, "branch") and hasattr(module, "shortcut")]
    block_inputs = {}
    hooks = [model.get_submodule(block).register_forward_pre_hook(
        lambda module, args, block=block: block_inputs.__setitem__(block, args[0].detach())) for block in blocks]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    print(f"{checkpoint} (epoch {state.get('epoch')}), {inputs} inputs, tol {tol}")
    for index, block in enumerate(blocks):
        runs = []
        for budget in budgets:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                extremes = jacobian_singular_extremes(model.get_submodule(block).branch, block_inputs[block].float(),
                                                      max_iter=budget, tol=tol, seed=index)
            runs.append((budget, extremes, time.perf_counter() - start))
        reference = runs[-1][1]
        print(f"{block} ({block_inputs[block][0].numel()} dims): " + "; ".join(
            f"{budget} steps: converged {float(found.converged.double().mean()):.2f}, sigma_min / last "
            f"{float((found.sigma_min / reference.sigma_min).min()):.4f}-"
            f"{float((found.sigma_min / reference.sigma_min).max()):.4f}, "
            f"sigma_max / last {float((found.sigma_max / reference.sigma_max).min()):.6f} ({seconds:.1f} s)"
            for budget, found, seconds in runs))


def fewest_pivots(cost: np.ndarray, most: int = 10**7) -> int:
    """The fewest pivots, within 25 %, at which ``ot.emd2`` stops at an optimal plan (result code 1)."""
    weights = np.full(len(cost), 1 / len(cost))
    low, high = 1, most
    while high / low > 1.25:
        middle = int((low * high) ** 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimal = ot.emd2(weights, weights, cost, numItermax=middle, log=True)[1]["result_code"] == 1
        low, high = (low, middle) if optimal else (middle, high)
    return high


def simplex(sizes: list[int], dim: int) -> None:
    rng = np.random.default_rng(0)
    for n in sizes:
        x = rng.normal(size=(n, dim))
        for name, y in {"independent": rng.normal(size=(n, dim)),
                        "moved copy": x + 0.1 * rng.normal(size=(n, dim))}.items():
            print(f"n={n}, d={dim}, {name}: optimal after ~{fewest_pivots(ot.dist(x, y)):.3g} pivots")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    lanczos_parser = commands.add_parser("lanczos")
    lanczos_parser.add_argument("checkpoint")
    lanczos_parser.add_argument("--budgets", type=int, nargs="+", default=[200, 500, 1500])
    lanczos_parser.add_argument("--inputs", type=int, default=2)
    lanczos_parser.add_argument("--tol", type=float, default=1e-3)
    simplex_parser = commands.add_parser("simplex")
    simplex_parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000])
    simplex_parser.add_argument("--dim", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "lanczos":
        lanczos(args.checkpoint, args.budgets, args.inputs, args.tol)
    else:
        simplex(args.sizes, args.dim)


if __name__ == "__main__":
    main()
