"""Seconds per single-node probe (one sub-block: the readout, the ANDC refit and its random-mask
controls, clusters and heads) at the default settings on cct_2_3x1_16 over the digits, for the
readout fitted to its tolerance (this tree) and for an older commit's fit (default a963cf2: 100
L-BFGS iterations), with each readout's distance to scikit-learn's optimum.

    python bench/single_node.py                                       # the network at initialisation
    python bench/single_node.py --checkpoint runs/cct_digits/RUN/checkpoints/epoch=020.ckpt

One thread; the seconds are the median of ``--repeats`` runs, CPU time (``time.process_time``,
robust to a busy machine) and wall time. The older commit's code is read with ``git show``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnconv_pl.analyses import single_node as analysis  # noqa: E402
from attnconv_pl.data import DigitsDataModule  # noqa: E402
from attnconv_pl.models import create_model  # noqa: E402
from attnconv_pl.probes import single_node as snp  # noqa: E402


def module_at(commit: str, path: str, name: str) -> types.ModuleType:
    """The module ``path`` as it was at ``commit``, imported as ``name`` (in its package, so its
    relative imports resolve to this tree's modules)."""
    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = name.rpartition(".")[0]
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
    return module


def sub_block_features(checkpoint: str | None) -> tuple[dict, dict]:
    """``({sub-block: (train features, labels)}, {sub-block: (val features, labels)})``: the
    token-averaged outputs of cct_2_3x1_16 (at initialisation, seed 0, or ``checkpoint``'s weights)
    on the digits' 1257 train and 270 validation images, as the analysis captures them."""
    torch.manual_seed(0)
    model = create_model("cct_2_3x1_16", num_classes=10, in_chans=1, img_size=16)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict({key.removeprefix("model."): value for key, value in state.items()
                               if key.startswith("model.")})
    model.eval()
    splits = DigitsDataModule(image_size=16, batch_size=32, num_workers=0, seed=0)._load_splits(
        ["train", "val"], augment_train=False)
    points = analysis.SingleNode.for_model(analysis.SingleNodeSettings(), model).points
    captured = []
    for dataset in splits.values():
        images, labels = zip(*[dataset[i] for i in range(len(dataset))])
        images, labels = torch.stack(images), torch.tensor(labels)
        outputs = {}
        hooks = [model.get_submodule(point.module).register_forward_hook(
            lambda module, args, output, name=point.module: outputs.__setitem__(name, output.mean(1).double()))
            for point in points]
        with torch.no_grad():
            model(images)
        for hook in hooks:
            hook.remove()
        captured.append({name: (value, labels) for name, value in outputs.items()})
    return captured[0], captured[1]


def timed(function, repeats: int) -> tuple[float, float]:
    """Median CPU and wall seconds of ``function()``."""
    cpu, wall = [], []
    for _ in range(repeats):
        started_cpu, started_wall = time.process_time(), time.perf_counter()
        function()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started_wall)
    return statistics.median(cpu), statistics.median(wall)


def distance_to_scikit_learn(weight: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, l2: float) -> float:
    """Relative Frobenius distance of a readout's standardised weights to scikit-learn's optimum."""
    std = features.std(0, correction=0)
    standard = ((features - features.mean(0)) / std).numpy()
    reference = LogisticRegression(C=1 / (len(labels) * l2), solver="newton-cholesky", tol=1e-13, max_iter=1000)
    expected = reference.fit(standard, labels.numpy()).coef_
    return float(np.linalg.norm((weight * std).numpy() - expected) / np.linalg.norm(expected))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a cct_2_3x1_16 digits checkpoint (default: the network at init)")
    parser.add_argument("--old", default="a963cf2", help="the commit of the fit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    old_probes = module_at(args.old, "attnconv_pl/probes/single_node.py", "attnconv_pl.probes._single_node_old")
    old_analysis = module_at(args.old, "attnconv_pl/analyses/single_node.py", "attnconv_pl.analyses._single_node_old")
    old_analysis.snp = old_probes
    new_settings, old_settings = analysis.SingleNodeSettings(), old_analysis.SingleNodeSettings()
    train, evaluation = sub_block_features(args.checkpoint)
    model = analysis.SingleNode.for_model(new_settings, create_model("cct_2_3x1_16", num_classes=10, in_chans=1,
                                                                     img_size=16))
    print(f"cct_2_3x1_16 {'at initialisation' if args.checkpoint is None else args.checkpoint}; default settings "
          f"(l2={new_settings.l2}, random_count={new_settings.random_count}); one thread; median of {args.repeats}")
    print(f"{'sub-block':22} {'old CPU s':>9} {'new CPU s':>9} {'ratio':>6} {'old wall':>9} {'new wall':>9}"
          f"  {'readout only (old/new CPU s)':>28}  {'old/new distance to sklearn':>28}")
    totals = np.zeros(4)
    for point in model.points:
        heads = model.num_heads.get(point.module)
        block_train, block_eval = train[point.module], evaluation[point.module]
        old_cpu, old_wall = timed(lambda: old_analysis.sub_block_numbers(block_train, block_eval, 10, heads,
                                                                        old_settings), args.repeats)
        new_cpu, new_wall = timed(lambda: analysis.sub_block_numbers(block_train, block_eval, 10, heads,
                                                                    new_settings), args.repeats)
        old_readout, _ = timed(lambda: old_probes.fit_readout(*block_train, 10), args.repeats)
        new_readout, _ = timed(lambda: snp.fit_readout(*block_train, 10), args.repeats)
        old_weight = old_probes.fit_readout(*block_train, 10)[0]
        new = snp.fit_readout(*block_train, 10)
        distances = [distance_to_scikit_learn(weight, *block_train, new_settings.l2)
                     for weight in (old_weight, new.weight)]
        totals += (old_cpu, new_cpu, old_wall, new_wall)
        print(f"{point.module:22} {old_cpu:9.3f} {new_cpu:9.3f} {old_cpu / new_cpu:6.2f} {old_wall:9.3f} "
              f"{new_wall:9.3f}  {old_readout:13.3f} / {new_readout:.3f}  {distances[0]:13.1e} / {distances[1]:.1e}"
              f"  ({new.iterations} Newton iterations, relative gradient {new.gradient_norm:.0e})")
    print(f"{'all four':22} {totals[0]:9.3f} {totals[1]:9.3f} {totals[0] / totals[1]:6.2f} {totals[2]:9.3f} "
          f"{totals[3]:9.3f}")


if __name__ == "__main__":
    main()
