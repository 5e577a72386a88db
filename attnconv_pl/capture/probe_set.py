"""The probe set: a fixed, seeded subset of a split, loaded once and run through a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Optional

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ._points import Activations
from ._projection import Projector
from ._recorder import capture_activations


def select_probe_indices(n_available: int, size: int, seed: int) -> Tensor:
    """Positions of the probe set in a split of ``n_available`` items: ``min(size, n_available)``
    distinct positions drawn by ``seed``, sorted; int64 (N,) on CPU.

    The same arguments give the same positions in every process, epoch and resume.
    """
    if n_available < 2 or size < 2:
        raise ValueError(f"a probe set needs at least 2 inputs; the split has {n_available}, size={size}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_available, generator=generator)[:size].sort().values


def load_probe_images(dataset: Dataset, indices: Sequence[int] | Tensor) -> tuple[Tensor, Tensor]:
    """Images (N, C, H, W) float32 and labels (N,) int64 of ``dataset`` at ``indices``.

    ``dataset`` must be un-augmented (``datamodule.eval_dataset(split)``) so the probe set is
    the same at every epoch; the images are loaded once and kept.
    """
    items = [dataset[int(index)] for index in indices]
    images = torch.stack([torch.as_tensor(image, dtype=torch.float32) for image, _ in items])
    labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
    return images, labels


def capture_probe_images(
    model: nn.Module,
    images: Tensor,
    layers: Sequence[str],
    *,
    representation: str,
    projector: Projector,
    batch_size: int = 256,
    device: Optional[torch.device] = None,
    autocast: Optional[Callable[[], AbstractContextManager]] = None,
    capture_inputs: bool = True,
) -> Activations:
    """Points ``{layer: {"input", "output"}}`` (N, d) float32 of ``images`` (N, C, H, W),
    in batches of ``batch_size`` moved to ``device`` (default: the model's device)."""
    device = device or next(model.parameters()).device
    batches = (images[start:start + batch_size].to(device, non_blocking=True)
               for start in range(0, len(images), batch_size))
    return capture_activations(model, layers, batches, representation=representation, projector=projector,
                               autocast=autocast, capture_inputs=capture_inputs)


def round_to_dtype(activations: Activations, dtype: torch.dtype) -> Activations:
    """The activations as stored in a snapshot of ``dtype``, back in float32 on CPU.

    Probes run on these values, so numbers recomputed later from a snapshot file (or from a
    checkpoint by ``probe.py``) equal the ones logged during training.
    """
    return {layer: {side: points.to(dtype).float().cpu() for side, points in sides.items()}
            for layer, sides in activations.items()}
