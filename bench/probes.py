"""Time the probes of attnconv_pl.probes beside the reference calls they replace or wrap.

    OMP_NUM_THREADS=2 python bench/probes.py [--quick] [--repeats 5]

For each point-cloud size n x d, prints the median wall time of each probe and of its
reference (scikit-dimension, POT, gudhi, numpy) and the ratio reference / ours (> 1: ours is
faster). A column for CUDA is added when a GPU is visible. Calls slower than --slow seconds are
timed once. Clouds are Gaussian; the second cloud of two-cloud probes is an independent
Gaussian cloud shifted by 0.5 per coordinate (a hard case for exact transport).
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import gudhi  # noqa: E402
import numpy as np  # noqa: E402
import ot  # noqa: E402
import skdim  # noqa: E402
import torch  # noqa: E402
from gudhi.wasserstein import wasserstein_distance  # noqa: E402

from attnconv_pl import probes  # noqa: E402
from attnconv_pl.probes.topology import _subsample_indices  # noqa: E402


def median_seconds(call, repeats: int, slow: float, device: str = "cpu") -> float:
    """Median wall time of ``call()`` over ``repeats`` runs after one warm-up (one run if slow)."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        call()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if times[0] > slow:
            return times[0]
    return statistics.median(times[1:])


def layer_probes(x: torch.Tensor) -> None:
    probes.total_variance(x)
    probes.participation_ratio(x)
    probes.intrinsic_dimensions(x)


def numpy_spectrum(x: np.ndarray) -> None:
    np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))


def skdim_layer(x: np.ndarray) -> None:
    numpy_spectrum(x)
    skdim.id.TwoNN().fit(x)
    skdim.id.MLE().fit(x)


def pot_exact_w2(x: np.ndarray, y: np.ndarray) -> float:
    cost = ot.dist(x, y, metric="euclidean") ** 2
    return ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost, numItermax=10**7) ** 0.5


def gudhi_rips(points: np.ndarray) -> None:
    tree = gudhi.RipsComplex(points=points).create_simplex_tree(max_dimension=2)
    tree.compute_persistence()


def cases(x: torch.Tensor, y: torch.Tensor, max_points: int, subsample: str, reference_rips: bool):
    """(probe, ours(cloud, other), reference label, reference call or None) rows for one size."""
    xn, yn = x.double().numpy(), y.double().numpy()
    sample = x[_subsample_indices(x, max_points, 0, subsample)].double().numpy()
    first = probes.persistence_diagrams(x, max_points=max_points, subsample=subsample)
    second = probes.persistence_diagrams(y, max_points=max_points, subsample=subsample)
    if reference_rips:
        rips_label, rips = "gudhi RipsComplex", lambda: gudhi_rips(sample)
    else:
        rips_label, rips = ("gudhi RipsPersistence",
                            lambda: gudhi.sklearn.RipsPersistence([0, 1]).fit_transform([sample]))
    return [
        ("variance+PR", lambda a, b: (probes.total_variance(a), probes.participation_ratio(a)),
         "numpy eigvalsh(cov)", lambda: numpy_spectrum(xn)),
        ("twonn", lambda a, b: probes.intrinsic_dimension(a, "twonn"), "skdim TwoNN", lambda: skdim.id.TwoNN().fit(xn)),
        ("mle k=20", lambda a, b: probes.intrinsic_dimension(a, "mle"), "skdim MLE", lambda: skdim.id.MLE().fit(xn)),
        ("layer: var+PR+twonn+mle", lambda a, b: layer_probes(a), "numpy+skdim", lambda: skdim_layer(xn)),
        ("W2 exact", lambda a, b: probes.wasserstein(a, b), "ot.emd2(euclid^2)", lambda: pot_exact_w2(xn, yn)),
        ("W2 sliced 128", lambda a, b: probes.wasserstein(a, b, method="sliced"),
         "ot.sliced (numpy)", lambda: ot.sliced_wasserstein_distance(xn, yn, n_projections=128, seed=0)),
        ("paired displacement", lambda a, b: probes.paired_displacement(a, b),
         "numpy norm", lambda: np.linalg.norm(xn - yn, axis=1).mean()),
        ("lipschitz 2000 pairs", lambda a, b: probes.lipschitz_ratios(a, b), "-", None),
        (f"persistence {max_points} {subsample}",
         lambda a, b: probes.persistence_diagrams(a, max_points=max_points, subsample=subsample), rips_label, rips),
        ("diagram W1 H1", lambda a, b: probes.diagram_distance(first[1], second[1], 1),
         "gudhi wasserstein", lambda: wasserstein_distance(first[1], second[1], order=1, internal_p=2)),
        ("diagram W2 H1", lambda a, b: probes.diagram_distance(first[1], second[1], 2),
         "gudhi wasserstein", lambda: wasserstein_distance(first[1], second[1], order=2, internal_p=2)),
        ("diagram bottleneck H1", lambda a, b: probes.diagram_distance(first[1], second[1], float("inf")),
         "gudhi bottleneck", lambda: gudhi.bottleneck_distance(first[1], second[1])),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (n in {500, 1000}, d in {64, 768})")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per call (median reported)")
    parser.add_argument("--slow", type=float, default=2.0, help="calls slower than this (s) are timed once")
    parser.add_argument("--max-points", type=int, default=500, help="persistence subsample size")
    parser.add_argument("--subsample", choices=("random", "farthest"), default="random", help="persistence subsample")
    parser.add_argument(
        "--rips-complex", action="store_true",
        help="reference persistence by gudhi.RipsComplex (full, 15 s at 500 points) instead of RipsPersistence",
    )
    args = parser.parse_args()
    sizes = [(n, d) for n in ((500, 1000) if args.quick else (1000, 2000, 5000)) for d in (64, 768)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, devices: {', '.join(devices)}")
    header = f"{'probe':<30}{'n':>6}{'d':>5}" + "".join(f"{'ours ' + dev + ' s':>13}" for dev in devices)
    print(header + f"  {'reference':<24}{'ref s':>9}{'ref/ours':>10}" + ("  ref/cuda" if "cuda" in devices else ""))
    for n, d in sizes:
        g = torch.Generator().manual_seed(n + d)
        x = torch.randn(n, d, generator=g)
        y = torch.randn(n, d, generator=g) + 0.5
        for probe, ours, label, reference in cases(x, y, args.max_points, args.subsample, args.rips_complex):
            timings = [
                median_seconds(lambda: ours(x.to(dev), y.to(dev)), args.repeats, args.slow, dev) for dev in devices
            ]
            line = f"{probe:<30}{n:>6}{d:>5}" + "".join(f"{t:>13.4f}" for t in timings)
            if reference is None:
                print(line + f"  {label:<24}")
                continue
            reference_seconds = median_seconds(reference, args.repeats, args.slow)
            ratios = "".join(f"{reference_seconds / t:>10.1f}" for t in timings)
            print(line + f"  {label:<24}{reference_seconds:>9.4f}{ratios}", flush=True)


if __name__ == "__main__":
    main()
