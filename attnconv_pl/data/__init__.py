"""Data modules by name: ``digits`` (the default, no download), ``cifar10``, ``cifar100``,
``flowers102``. See :class:`ClassificationDataModule` for what they share."""

from attnconv_pl.data.base import SPLITS, ClassificationDataModule, TransformedSubset, seeded_partition
from attnconv_pl.data.cifar import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule
from attnconv_pl.data.digits import DigitsDataModule
from attnconv_pl.data.flowers import Flowers102DataModule

DATAMODULES: dict[str, type[ClassificationDataModule]] = {
    "digits": DigitsDataModule,
    "cifar10": CIFAR10DataModule,
    "cifar100": CIFAR100DataModule,
    "flowers102": Flowers102DataModule,
}
"""Data module classes by dataset name."""


def create_datamodule(name: str, **kwargs) -> ClassificationDataModule:
    """Build the data module registered as ``name`` with its ``__init__`` arguments ``kwargs``."""
    if name not in DATAMODULES:
        raise ValueError(f"unknown dataset {name!r}; known datasets are: {', '.join(sorted(DATAMODULES))}")
    return DATAMODULES[name](**kwargs)


__all__ = [
    "CIFAR10DataModule",
    "CIFAR100DataModule",
    "CIFARDataModule",
    "ClassificationDataModule",
    "DATAMODULES",
    "DigitsDataModule",
    "Flowers102DataModule",
    "SPLITS",
    "TransformedSubset",
    "create_datamodule",
    "seeded_partition",
]
