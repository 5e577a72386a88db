"""What the similarity analysis costs on the default digits model (attention_net, dim 64, 16 px,
probe layers stem, mixer, norm, head; at initialisation, seed 0):

- seconds per probed epoch at 1000 probe inputs (the first 1000 images of the digits' training
  split): the epoch that compares with a previous and a first epoch (three CKA matrices), beside
  a plain forward pass over the same inputs;
- peak memory of one probed epoch at 10,000 inputs (random images: the digits hold 1797), as the
  growth of the process's peak resident memory, beside the 800 MB of one 10,000 x 10,000
  float64 Gram matrix that a full (not minibatch) estimator needs per layer.

    python bench/similarity_cost.py [--device cuda] [--repeats 3] [--cka-batch-size 256]

One thread on CPU; wall and CPU seconds (CPU time is robust to a busy machine). Memory is measured
first, in a fresh process (peak RSS is a high-water mark).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnconv_pl.analyses.base import CheckpointInputs, LabelledInputs  # noqa: E402
from attnconv_pl.analyses.similarity import Similarity, SimilaritySettings  # noqa: E402
from attnconv_pl.data import DigitsDataModule  # noqa: E402
from attnconv_pl.models import create_model  # noqa: E402


def default_model(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("attention_net", num_classes=10, in_chans=1, img_size=16, dim=64).to(device).eval()


def checkpoint(model: torch.nn.Module, images: torch.Tensor, epoch: int, device: torch.device) -> CheckpointInputs:
    inputs = LabelledInputs(images, torch.zeros(len(images), dtype=torch.long), torch.arange(len(images)), "digits",
                            "train", own_data=True)
    return CheckpointInputs(epoch=epoch, model=model, device=device, autocast=nullcontext, seed=0, batch_size=256,
                            max_epochs=None, inputs=lambda split, size: inputs)


def digits_images(count: int) -> torch.Tensor:
    dataset = DigitsDataModule(image_size=16, batch_size=32, num_workers=0, seed=0)._load_splits(
        ["train"], augment_train=False)["train"]
    return torch.stack([dataset[i][0] for i in range(count)])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def memory(cka_batch_size: int) -> None:
    """Peak RSS growth of the first and of a later probed epoch at 10,000 inputs (CPU)."""
    device = torch.device("cpu")
    model = default_model(device)
    images = torch.randn(10_000, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    analysis = Similarity.for_model(SimilaritySettings(cka_batch_size=cka_batch_size), model)
    with torch.no_grad():
        model(images[:256])  # warm-up: allocator and kernels
    before = peak_rss_mb()
    analysis.probe_checkpoint(checkpoint(model, images, 0, device))
    first = peak_rss_mb()
    analysis.probe_checkpoint(checkpoint(model, images, 1, device))
    analysis.probe_checkpoint(checkpoint(model, images, 2, device))
    later = peak_rss_mb()
    stored = sum(gram.numel() * gram.element_size() for batch in analysis.previous.grams for gram in batch.values())
    layers = len(analysis.layers)
    print(f"memory at 10,000 inputs, cka_batch_size {cka_batch_size}, {layers} layers "
          f"({len(analysis.previous.grams)} batches):")
    print(f"  peak RSS growth, first epoch: {first - before:.0f} MB; after two more epochs (previous and first "
          f"references held): {later - before:.0f} MB")
    print(f"  one epoch's stored Gram matrices (all layers): {stored / 1e6:.0f} MB")
    print(f"  a full estimator's n x n float64 Gram matrix: {10_000**2 * 8 / 1e6:.0f} MB per layer, "
          f"{layers * 10_000**2 * 8 / 1e6:.0f} MB for {layers} layers")


def timing(device: torch.device, repeats: int, cka_batch_size: int) -> None:
    """Seconds of a probed epoch with previous and first references at 1000 digits images."""
    model = default_model(device)
    images = digits_images(1000)
    analysis = Similarity.for_model(SimilaritySettings(cka_batch_size=cka_batch_size), model)
    analysis.probe_checkpoint(checkpoint(model, images, 0, device))
    analysis.probe_checkpoint(checkpoint(model, images, 1, device))

    def synchronised(function) -> tuple[float, float]:
        """Wall and CPU seconds of ``function()``."""
        started, started_cpu = time.perf_counter(), time.process_time()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started, time.process_time() - started_cpu

    def forward():
        with torch.no_grad():
            for start in range(0, len(images), 256):
                model(images[start:start + 256].to(device))

    epochs = [synchronised(lambda epoch=epoch: analysis.probe_checkpoint(checkpoint(model, images, epoch, device)))
              for epoch in range(2, 2 + repeats)]
    forwards = [synchronised(forward) for _ in range(repeats)]
    print(f"time at 1000 digits inputs on {device} ({torch.get_num_threads()} thread(s)), cka_batch_size "
          f"{cka_batch_size}, layers {', '.join(analysis.layers)}; median of {repeats}:")
    for what, seconds in (("one probed epoch (capture, layer x layer, previous and first)", epochs),
                          ("a plain forward pass over the same inputs", forwards)):
        wall, cpu = (statistics.median(column) for column in zip(*seconds))
        print(f"  {what}: {wall:.3f} s wall, {cpu:.3f} s CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cka-batch-size", type=int, default=SimilaritySettings().cka_batch_size)
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_only:
        memory(args.cka_batch_size)
        return
    subprocess.run([sys.executable, __file__, "--memory-only", "--cka-batch-size", str(args.cka_batch_size)],
                   check=True)
    timing(torch.device(args.device), args.repeats, args.cka_batch_size)


if __name__ == "__main__":
    main()
