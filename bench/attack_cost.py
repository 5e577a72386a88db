"""Seconds per checkpoint of the adversarial accuracy on the default model (``configs/default.yaml``:
attention_net, dim 64, digits at 16 x 16, one grey channel), CPU, one thread.

    python bench/attack_cost.py                                   # the network at initialisation
    python bench/attack_cost.py --checkpoint runs/default/RUN/checkpoints/epoch=030.ckpt
    python bench/attack_cost.py --analysis                        # the robustness analysis's defaults

The grid: L_inf eps in {0, 1, 2, 4, 8} / 255 in pixel units (pixels in [0, 1]), divided by the
digits' train-split std to be in the normalised units the model takes; L_2 eps in {0, 0.05, 0.1,
0.2, 0.4} in pixel units (an image's whole change), divided the same way. Attacks: FGSM, and PGD
with 10 steps of 2.5 * eps / 10 from a random start. Inputs: 1000 train images (seeded,
unaugmented), batches of 256. The cost of an attack does not depend on the weights; the
accuracies printed beside it do. Seconds are the median over ``--repeats`` runs, CPU time
(``time.process_time``, robust to a busy machine) and wall time.

``--analysis`` times instead what the robustness analysis adds to a checkpoint of ``probe.py``
with ``--robustness.attacks '[fgsm, pgd]'`` and otherwise its defaults: its default L_inf
grid (``DEFAULT_EPS_GRIDS["linf"]``, normalised units), PGD with 10 steps, on the digits val
split (270 inputs, all of it at the default size 1000), batches of 256, probe seed 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnconv_pl.analyses.base import CheckpointInputs, LabelledInputs  # noqa: E402
from attnconv_pl.analyses.robustness import Robustness, RobustnessSettings  # noqa: E402
from attnconv_pl.data import DigitsDataModule  # noqa: E402
from attnconv_pl.models import create_model  # noqa: E402
from attnconv_pl.probes.attacks import Attack, adversarial_accuracy  # noqa: E402

PIXEL_GRIDS = {"linf": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255), "l2": (0.0, 0.05, 0.1, 0.2, 0.4)}
"""Radii in pixel units (pixels in [0, 1]) per norm (**our choice**)."""

T = TypeVar("T")

ATTACKS = {"fgsm": lambda norm: Attack("fgsm", norm), "pgd-10": lambda norm: Attack("pgd", norm, steps=10)}


def default_model(checkpoint: str | None) -> torch.nn.Module:
    """configs/default.yaml's network, at initialisation (seed 0) or with ``checkpoint``'s weights."""
    torch.manual_seed(0)
    model = create_model("attention_net", num_classes=10, in_chans=1, img_size=16, dim=64)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict({key.removeprefix("model."): value for key, value in state.items()
                               if key.startswith("model.")})
    return model.eval()


def digits(size: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor, float]:
    """``size`` normalised images (1, 16, 16) of ``split`` (unaugmented, seeded), their labels and
    the train-split pixel std."""
    data = DigitsDataModule(image_size=16, batch_size=32, num_workers=0, seed=0)
    images = data._load_splits([split], augment_train=False)[split]
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:size].tolist()
    images, labels = zip(*[images[i] for i in chosen])
    return torch.stack(images), torch.tensor(labels), data.std[0]


def median_seconds(repeats: int, work: Callable[[], T]) -> tuple[float, float, T]:
    """Median CPU and wall seconds of ``repeats`` calls of ``work``, and its last result."""
    cpu, wall = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return statistics.median(cpu), statistics.median(wall), result


def analysis_cost(model: torch.nn.Module, repeats: int) -> None:
    """Seconds per checkpoint of the robustness analysis, noise alone and with each attack."""
    images, labels, _ = digits(1000, "val")
    drawn = LabelledInputs(images, labels, torch.arange(len(labels)), "digits", "val", own_data=True)
    checkpoint = CheckpointInputs(epoch=0, model=model, device=torch.device("cpu"), autocast=None, seed=0,
                                  batch_size=256, max_epochs=None, inputs=lambda split, size: drawn)
    print(f"robustness analysis, {len(images)} val inputs, one thread, median of {repeats}")
    print(f"{'attacks':<12} {'cpu s':>7} {'wall s':>7}  accuracy (noise levels, then each attack per eps)")
    for attacks in ((), ("fgsm",), ("pgd",), ("fgsm", "pgd")):
        analysis = Robustness(RobustnessSettings(attacks=attacks))
        cpu, wall, result = median_seconds(repeats, lambda: analysis.probe_checkpoint(checkpoint))
        cells = " ".join(f"{value:.3f}" for value in result.values.values())
        print(f"{','.join(attacks) or 'none':<12} {cpu:7.2f} {wall:7.2f}  {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a checkpoint of the default model (default: at initialisation)")
    parser.add_argument("--size", type=int, default=1000, help="inputs attacked")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--analysis", action="store_true", help="time the robustness analysis's defaults instead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = default_model(args.checkpoint)
    if args.analysis:
        analysis_cost(model, args.repeats)
        return
    images, labels, std = digits(args.size)
    print(f"{len(images)} inputs, std {std:.4f}: eps in normalised units = eps in pixel units / {std:.4f}; "
          f"one thread; median of {args.repeats}")
    print(f"{'attack':<12} {'norm':<5} {'cpu s':>7} {'wall s':>7}  accuracy per eps (pixel units)")
    for norm, pixel_grid in PIXEL_GRIDS.items():
        grid = [eps / std for eps in pixel_grid]
        for name, build in ATTACKS.items():
            cpu, wall, accuracies = median_seconds(
                args.repeats, lambda: adversarial_accuracy(model, images, labels, build(norm), grid, batch_size=256))
            cells = "  ".join(f"{eps:.4g}: {accuracy:.3f}" for eps, accuracy in zip(pixel_grid, accuracies))
            print(f"{name:<12} {norm:<5} {cpu:7.2f} {wall:7.2f}  {cells}")


if __name__ == "__main__":
    main()
