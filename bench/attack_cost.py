"""Seconds per checkpoint of the adversarial accuracy on the default model (``configs/default.yaml``:
attention_net, dim 64, digits at 16 x 16, one grey channel), CPU, one thread.

    python bench/attack_cost.py                                   # the network at initialisation
    python bench/attack_cost.py --checkpoint runs/default/RUN/checkpoints/epoch=030.ckpt

The grid: L_inf eps in {0, 1, 2, 4, 8} / 255 in pixel units (pixels in [0, 1]), divided by the
digits' train-split std to be in the normalised units the model takes; L_2 eps in {0, 0.05, 0.1,
0.2, 0.4} in pixel units (an image's whole change), divided the same way. Attacks: FGSM, and PGD
with 10 steps of 2.5 * eps / 10 from a random start. Inputs: 1000 train images (seeded,
unaugmented), batches of 256. The cost of an attack does not depend on the weights; the
accuracies printed beside it do. Seconds are the median over ``--repeats`` runs, CPU time
(``time.process_time``, robust to a busy machine) and wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnconv_pl.data import DigitsDataModule  # noqa: E402
from attnconv_pl.models import create_model  # noqa: E402
from attnconv_pl.probes.attacks import Attack, adversarial_accuracy  # noqa: E402

PIXEL_GRIDS = {"linf": (0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255), "l2": (0.0, 0.05, 0.1, 0.2, 0.4)}
"""Radii in pixel units (pixels in [0, 1]) per norm (**our choice**)."""

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


def digits(size: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``size`` normalised train images (1, 16, 16), their labels and the train-split pixel std."""
    data = DigitsDataModule(image_size=16, batch_size=32, num_workers=0, seed=0)
    train = data._load_splits(["train"], augment_train=False)["train"]
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:size].tolist()
    images, labels = zip(*[train[i] for i in chosen])
    return torch.stack(images), torch.tensor(labels), data.std[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a checkpoint of the default model (default: at initialisation)")
    parser.add_argument("--size", type=int, default=1000, help="inputs attacked")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = default_model(args.checkpoint)
    images, labels, std = digits(args.size)
    print(f"{len(images)} inputs, std {std:.4f}: eps in normalised units = eps in pixel units / {std:.4f}; "
          f"one thread; median of {args.repeats}")
    print(f"{'attack':<12} {'norm':<5} {'cpu s':>7} {'wall s':>7}  accuracy per eps (pixel units)")
    for norm, pixel_grid in PIXEL_GRIDS.items():
        grid = [eps / std for eps in pixel_grid]
        for name, build in ATTACKS.items():
            cpu, wall = [], []
            for _ in range(args.repeats):
                started, started_cpu = time.perf_counter(), time.process_time()
                accuracies = adversarial_accuracy(model, images, labels, build(norm), grid, batch_size=256)
                cpu.append(time.process_time() - started_cpu)
                wall.append(time.perf_counter() - started)
            cells = "  ".join(f"{eps:.4g}: {accuracy:.3f}" for eps, accuracy in zip(pixel_grid, accuracies))
            print(f"{name:<12} {norm:<5} {statistics.median(cpu):7.2f} {statistics.median(wall):7.2f}  {cells}")


if __name__ == "__main__":
    main()
