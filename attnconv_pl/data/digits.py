"""scikit-learn's bundled 8x8 handwritten digits, upsampled: real data that needs no download."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import Dataset, TensorDataset
from torchvision.transforms import v2

from attnconv_pl.data.base import ClassificationDataModule, TransformedSubset, seeded_partition

DIGITS_MAX_VALUE = 16.0
"""The bundled digits' pixel values are integers in [0, 16]."""


def digits_images(image_size: int, in_chans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 bundled digits as float32 images (N, in_chans, image_size, image_size) in [0, 1],
    resized from 8x8 by bilinear interpolation (antialiased when shrinking; the channel repeated
    ``in_chans`` times), and their int64 labels (N,) in [0, 10)."""
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / DIGITS_MAX_VALUE
    if image_size != images.shape[-1]:
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear",
                               align_corners=False, antialias=True)
    return images.repeat(1, in_chans, 1, 1), torch.as_tensor(bunch.target, dtype=torch.int64)


class DigitsDataModule(ClassificationDataModule):
    """scikit-learn's bundled digits (1797 images of 0-9, 8x8), resized to ``image_size``.

    The images are scaled to [0, 1], resized, split at random into train / val / test by
    ``val_fraction`` and ``test_fraction`` (fixed by ``seed``) and normalised per channel by the
    train split's pixel mean and standard deviation (``mean`` and ``std``, set by the first
    load). The train split is augmented by a random shift of up to ``max_shift`` pixels in each
    direction (padding with the background, then cropping back). Everything is held in memory.

    Args:
        data_dir: unused (the data ships with scikit-learn); accepted so that configs can switch
            between data modules by ``class_path`` alone.
        batch_size, num_workers, seed, augment: see :class:`ClassificationDataModule`.
        image_size: side of the resized images in pixels.
        in_chans: 1 (grey) or 3 (the grey channel repeated, for RGB models).
        val_fraction: fraction of all images in the validation split.
        test_fraction: fraction of all images in the test split.
        max_shift: largest random shift of the train augmentation, in pixels of the resized image.
    """

    num_classes = 10

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
        image_size: int = 16,
        in_chans: int = 1,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        max_shift: int = 2,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, seed, augment)
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 (grey) or 3 (grey repeated as RGB), got {in_chans}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1 pixel, got {image_size}")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(
                f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must each be in [0, 1) "
                f"and sum to less than 1, leaving images for training"
            )
        if max_shift < 0:
            raise ValueError(f"max_shift must be >= 0 pixels, got {max_shift}")
        self.image_size = image_size
        self.in_chans = in_chans
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.max_shift = max_shift
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        self.save_hyperparameters()

    def _load_splits(self, splits: Iterable[str], augment_train: bool) -> dict[str, Dataset]:
        images, labels = digits_images(self.image_size, self.in_chans)
        train, val, test = seeded_partition(len(labels), [self.val_fraction, self.test_fraction], self.seed)
        mean = images[train].mean(dim=(0, 2, 3))
        std = images[train].std(dim=(0, 2, 3))
        self.mean, self.std = tuple(mean.tolist()), tuple(std.tolist())
        normalized = TensorDataset(v2.functional.normalize(images, self.mean, self.std), labels)
        indices = {"train": train, "val": val, "test": test}
        shift = None
        if augment_train and self.max_shift > 0:
            background = (-mean / std).tolist()
            shift = v2.RandomCrop(self.image_size, padding=self.max_shift, fill=background)
        return {
            split: TransformedSubset(normalized, indices[split], shift if split == "train" else None)
            for split in splits
        }
