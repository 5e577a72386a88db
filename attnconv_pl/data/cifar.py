"""CIFAR-10 and CIFAR-100 (torchvision), with the standard augmentation and normalisation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.transforms import v2

from attnconv_pl.data.base import (
    ClassificationDataModule,
    DataFiles,
    TransformedSubset,
    normalized_tensor,
    rand_augment,
    seeded_partition,
)

CIFAR_PADDING = 4
"""Zero padding (pixels) of the standard random-crop augmentation."""


class CIFARDataModule(ClassificationDataModule):
    """The part CIFAR-10 and CIFAR-100 share; subclasses name the torchvision class and the
    per-channel ``mean`` / ``std`` of its train images.

    train = the official train set minus a seeded validation subset of ``val_size`` images;
    val = that subset; test = the official test set. Train and val are views of one loaded
    train set with different transforms. Train augmentation: random crop 32 with 4-pixel zero
    padding and horizontal flip, then RandAugment when ``randaugment`` names one.

    Args:
        data_dir: folder holding (or receiving) the dataset's ``cifar-*-python*`` folder.
        batch_size, num_workers, seed, augment: see :class:`ClassificationDataModule`.
        download: fetch the files from the official URL in ``prepare_data`` when missing.
        val_size: images of the official train set held out for validation.
        randaugment: timm's RandAugment string (e.g. ``"rand-m9-mstd0.5-inc1"``, the CCT
            recipe's) applied to train images after crop and flip; None: none.
    """

    torchvision_class: type[CIFAR10]
    dataset_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    in_chans = 3
    image_size = 32

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 4,
        seed: int = 0,
        augment: bool = True,
        download: bool = True,
        val_size: int = 5000,
        randaugment: Optional[str] = None,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, seed, augment)
        rand_augment(randaugment, self.mean)  # a bad string fails here, not in a loader worker
        self.randaugment = randaugment
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0 images, got {val_size}")
        self.download = download
        self.val_size = val_size
        self.save_hyperparameters()

    @property
    def files(self) -> DataFiles:
        """Where the files must be and where to get them."""
        cls = self.torchvision_class
        names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
        return DataFiles(
            dataset=self.dataset_name,
            folder=self.data_dir / cls.base_folder,
            expected=", ".join(names),
            source=f"{cls.url} (extract it in '{self.data_dir}/', it unpacks to {cls.base_folder}/)",
        )

    def _open(self, train: bool, download: bool = False) -> CIFAR10:
        return self.files.open(self.torchvision_class, download, root=str(self.data_dir), train=train)

    def prepare_data(self) -> None:
        """Download the dataset when ``download`` is on and the files are missing (one process
        per node); otherwise nothing (``setup`` reports missing files)."""
        if self.download:
            self._open(train=False, download=True)

    def _transform(self, augment: bool) -> v2.Compose:
        crop_flip = [v2.RandomCrop(self.image_size, padding=CIFAR_PADDING), v2.RandomHorizontalFlip()]
        augmented = [*crop_flip, *rand_augment(self.randaugment, self.mean)] if augment else []
        return v2.Compose([*augmented, *normalized_tensor(self.mean, self.std)])

    def _load_splits(self, splits: Iterable[str], augment_train: bool) -> dict[str, Dataset]:
        splits = set(splits)
        datasets: dict[str, Dataset] = {}
        if splits & {"train", "val"}:
            official_train = self._open(train=True)
            train, val = seeded_partition(len(official_train), [self.val_size], self.seed)
            views = {"train": (train, self._transform(augment_train)), "val": (val, self._transform(False))}
            for split in splits & {"train", "val"}:
                indices, transform = views[split]
                datasets[split] = TransformedSubset(official_train, indices, transform)
        if "test" in splits:
            datasets["test"] = TransformedSubset(self._open(train=False), transform=self._transform(False))
        return datasets


class CIFAR10DataModule(CIFARDataModule):
    """CIFAR-10: 60000 32x32 colour images in 10 classes (50000 train, 10000 test), in
    ``<data_dir>/cifar-10-batches-py/``. See :class:`CIFARDataModule` for the arguments."""

    torchvision_class = CIFAR10
    dataset_name = "CIFAR-10"
    num_classes = 10
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(CIFARDataModule):
    """CIFAR-100: 60000 32x32 colour images in 100 fine classes (50000 train, 10000 test), in
    ``<data_dir>/cifar-100-python/``. See :class:`CIFARDataModule` for the arguments."""

    torchvision_class = CIFAR100
    dataset_name = "CIFAR-100"
    num_classes = 100
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
