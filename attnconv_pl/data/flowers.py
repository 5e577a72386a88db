"""Oxford Flowers-102 (torchvision) with its own train / val / test splits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from torch.utils.data import Dataset
from torchvision.datasets import Flowers102
from torchvision.transforms import v2

from attnconv_pl.data.base import (
    ClassificationDataModule,
    DataFiles,
    TransformedSubset,
    normalized_tensor,
    rand_augment,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CENTER_CROP_FRACTION = 0.875
"""Evaluation resizes the shorter side to ``image_size / CENTER_CROP_FRACTION`` and then crops the
centre ``image_size`` square (256 then 224 at the default size), the usual ImageNet protocol."""

FLOWERS_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"


class Flowers102DataModule(ClassificationDataModule):
    """Oxford Flowers-102: 8189 photos of 102 flower species, with the dataset's own splits
    (1020 train, 1020 val, 6149 test), in ``<data_dir>/flowers-102/``.

    Train: random resized crop to ``image_size`` and horizontal flip; val / test: resize and
    centre crop (see :data:`CENTER_CROP_FRACTION`). Normalised by the ImageNet mean / std.
    The official splits are used as they are, so ``seed`` does not affect them.

    Args:
        data_dir: folder holding (or receiving) ``flowers-102/``.
        batch_size, num_workers, seed, augment: see :class:`ClassificationDataModule`.
        download: fetch the files from the official site in ``prepare_data`` when missing.
        image_size: side of the square images fed to the model, in pixels.
        randaugment: timm's RandAugment string (e.g. ``"rand-m9-mstd0.5-inc1"``) applied to train
            images after crop and flip; None: none.
    """

    num_classes = 102
    in_chans = 3
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        num_workers: int = 4,
        seed: int = 0,
        augment: bool = True,
        download: bool = True,
        image_size: int = 224,
        randaugment: Optional[str] = None,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, seed, augment)
        rand_augment(randaugment, self.mean)  # a bad string fails here, not in a loader worker
        self.randaugment = randaugment
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1 pixel, got {image_size}")
        self.download = download
        self.image_size = image_size
        self.save_hyperparameters()

    @property
    def files(self) -> DataFiles:
        """Where the files must be and where to get them."""
        return DataFiles(
            dataset="Flowers-102",
            folder=self.data_dir / "flowers-102",
            expected="jpg/image_00001.jpg ... jpg/image_08189.jpg, imagelabels.mat, setid.mat",
            source=(f"{FLOWERS_URL} (102flowers.tgz, extracted there so that the images are in jpg/, "
                    f"plus imagelabels.mat and setid.mat)"),
        )

    def _open(self, split: str, download: bool = False) -> Flowers102:
        return self.files.open(Flowers102, download, root=str(self.data_dir), split=split)

    def prepare_data(self) -> None:
        """Download the dataset when ``download`` is on and the files are missing (one process
        per node); otherwise nothing (``setup`` reports missing files)."""
        if self.download:
            self._open("val", download=True)

    def _transform(self, augment: bool) -> v2.Compose:
        if augment:
            geometry = [v2.RandomResizedCrop(self.image_size), v2.RandomHorizontalFlip(),
                        *rand_augment(self.randaugment, self.mean)]
        else:
            geometry = [v2.Resize(round(self.image_size / CENTER_CROP_FRACTION)), v2.CenterCrop(self.image_size)]
        return v2.Compose([*geometry, *normalized_tensor(self.mean, self.std)])

    def _load_splits(self, splits: Iterable[str], augment_train: bool) -> dict[str, Dataset]:
        return {
            split: TransformedSubset(self._open(split), transform=self._transform(augment_train and split == "train"))
            for split in splits
        }
