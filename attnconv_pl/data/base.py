"""The shared part of the image-classification data modules.

A data module knows its ``num_classes``, ``in_chans`` and ``image_size`` right after ``__init__``
(the CLI links them into the model), builds its ``train`` / ``val`` / ``test`` splits in
:meth:`~ClassificationDataModule.setup` with the validation split fixed by ``seed``, and hands out
any split without augmentation through :meth:`~ClassificationDataModule.eval_dataset` (the probe
set and ``probe.py --data`` use it). A subclass only says how to load splits
(:meth:`~ClassificationDataModule._load_splits`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, TypeVar

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from torchvision.transforms import v2

from attnconv_pl.data.seeding import epoch_seed, run_seed

SPLITS = ("train", "val", "test")
"""Split names, in the order the data flows through training."""

STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
    None: SPLITS,
}
"""Which splits each Lightning stage needs (``None``: all of them)."""

D = TypeVar("D")


def holdout_count(size: int | float, n: int) -> int:
    """Number of items a held-out size means out of ``n``: a float in [0, 1) is a fraction of
    ``n`` (rounded to the nearest count), an int >= 0 is a count."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"a split size must be an int (a count) or a float (a fraction), got {size!r}")
    if isinstance(size, float):
        if not 0.0 <= size < 1.0:
            raise ValueError(f"a split fraction must be in [0, 1), got {size}; give a count as an int")
        return round(size * n)
    if size < 0:
        raise ValueError(f"a split count must be >= 0, got {size}")
    return size


def seeded_partition(n: int, holdout_sizes: Sequence[int | float], seed: int) -> list[list[int]]:
    """Randomly partition ``range(n)`` into a remainder and held-out parts, fixed by ``seed``.

    Args:
        n: number of items.
        holdout_sizes: size of each held-out part (see :func:`holdout_count`).
        seed: seed of the permutation; the same seed gives the same parts on every process.

    Returns:
        ``[remainder, part_1, part_2, ...]``, each a sorted list of indices; together they cover
        ``range(n)`` exactly once.
    """
    counts = [holdout_count(size, n) for size in holdout_sizes]
    if sum(counts) >= n:
        raise ValueError(
            f"held-out split sizes {list(holdout_sizes)} take {sum(counts)} of {n} items; "
            f"make them smaller so at least one item is left for training"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    bounds = [0]
    for count in counts:
        bounds.append(bounds[-1] + count)
    parts = [order[start:stop] for start, stop in zip(bounds, bounds[1:])]
    return [sorted(part) for part in [order[bounds[-1]:], *parts]]


class TransformedSubset(Dataset):
    """The items ``dataset[indices[i]]`` with ``transform`` applied to the image.

    Several views with different transforms can share one loaded ``dataset`` (train with
    augmentation, val without). Items are ``(image, label)`` with ``label`` a Python int.
    """

    def __init__(
        self,
        dataset: Dataset,
        indices: Optional[Sequence[int]] = None,
        transform: Optional[Callable[[Any], torch.Tensor]] = None,
    ) -> None:
        self.dataset = dataset
        self.indices = list(range(len(dataset))) if indices is None else list(indices)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[self.indices[index]]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(label)


def normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    """Transforms turning a PIL image (or uint8 tensor) into a plain float32 tensor (C, H, W)
    in [0, 1], then normalised per channel by ``mean`` and ``std``."""
    return [
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
        v2.ToPureTensor(),
    ]


@dataclass(frozen=True)
class DataFiles:
    """Where a dataset's files must be and where to get them, for the missing-data error.

    Attributes:
        dataset: the dataset's name for messages, e.g. ``"CIFAR-10"``.
        folder: the folder torchvision reads, e.g. ``<data_dir>/cifar-10-batches-py``.
        expected: what must be in ``folder``.
        source: where to get the files and how to unpack them.
    """

    dataset: str
    folder: Path
    expected: str
    source: str

    def open(self, dataset_class: Callable[..., D], download: bool, **kwargs: Any) -> D:
        """``dataset_class(download=download, **kwargs)`` (a torchvision dataset), with its
        not-found and download failures turned into a :class:`FileNotFoundError` that says where
        the files must be and how to get them."""
        try:
            return dataset_class(download=download, **kwargs)
        except (OSError, RuntimeError) as err:
            raise self.missing_error(err, download) from err

    def missing_error(self, cause: BaseException, download: bool) -> FileNotFoundError:
        """The error for files that are missing, corrupted or could not be downloaded."""
        attempt = f"downloading them failed: {cause}" if download else "download is off"
        return FileNotFoundError(
            f"{self.dataset} files are missing or corrupted in '{self.folder}/' ({attempt}). "
            f"Expected there: {self.expected}. Get them from {self.source}, "
            f"or fetch them automatically with --data.init_args.download true (needs network)."
        )


class EpochShuffle(RandomSampler):
    """A random order of ``data_source`` that depends only on ``seed`` and the epoch.

    Lightning calls :meth:`set_epoch` before every training epoch (as for a
    ``DistributedSampler``, which replaces this sampler under DDP and is seeded the same way,
    from the run's seed and the epoch), so a resumed run sees every later epoch's batches in the
    order the uninterrupted run saw them.

    Args:
        data_source: the dataset to shuffle.
        seed: the run's seed.
    """

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Give the next passes the order of epoch ``epoch`` (0-based)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return super().__iter__()


class ClassificationDataModule(L.LightningDataModule, ABC):
    """Train / val / test splits of an image-classification dataset, and their loaders.

    Items are ``(image, label)``: a float32 tensor (C, H, W) and an int in [0, num_classes).
    The train split is shuffled (in an order fixed by the run's seed and the epoch, see
    :class:`EpochShuffle`) and augmented (unless ``augment`` is false); val and test are
    neither. Loaders pin memory when CUDA is available and keep workers alive between epochs.

    Subclasses set ``num_classes``, ``in_chans`` and ``image_size`` in (or before) ``__init__``,
    call ``self.save_hyperparameters()`` and implement :meth:`_load_splits`.

    Args:
        data_dir: folder holding the datasets' files (downloaded there when allowed).
        batch_size: images per batch (per process under DDP).
        num_workers: loader worker processes (0 loads in the main process).
        seed: fixes the random split into train / val (/ test); independent of the global seed.
        augment: augment the train split.
    """

    num_classes: int
    in_chans: int
    image_size: int

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        num_workers: int = 0,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.augment = augment
        self._datasets: dict[str, Dataset] = {}

    @abstractmethod
    def _load_splits(self, splits: Iterable[str], augment_train: bool) -> dict[str, Dataset]:
        """Load the named splits (a subset of :data:`SPLITS`), reading no more than they need.

        Returns a dict from each split name to its dataset; ``train`` is augmented only when
        ``augment_train`` is true; ``val`` and ``test`` never are.
        """

    def setup(self, stage: Optional[str] = None) -> None:
        """Build the splits the stage needs (``fit``: train and val; ``validate``: val;
        ``test`` / ``predict``: test; ``None``: all); splits already built are kept."""
        if stage not in STAGE_SPLITS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGE_SPLITS)}")
        missing = [split for split in STAGE_SPLITS[stage] if split not in self._datasets]
        if missing:
            self._datasets.update(self._load_splits(missing, augment_train=self.augment))

    def eval_dataset(self, split: str) -> Dataset:
        """The ``split`` ("train", "val" or "test") without augmentation, loading only what that
        split needs (val / test built by :meth:`setup` are reused)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid splits are: {', '.join(SPLITS)}")
        if split != "train" and split in self._datasets:
            return self._datasets[split]
        return self._load_splits([split], augment_train=False)[split]

    def _built(self, split: str) -> Dataset:
        """The built split; an AttributeError (so ``hasattr`` is false) saying which setup() builds it."""
        if split not in self._datasets:
            stages = [repr(stage) for stage, splits in STAGE_SPLITS.items() if stage and split in splits]
            raise AttributeError(
                f"the {split} split is not built yet; call setup() with stage {' or '.join(stages)} "
                f"(or no stage, for all splits) first"
            )
        return self._datasets[split]

    @property
    def train_dataset(self) -> Dataset:
        """The train split (augmented unless ``augment`` is false); built by ``setup("fit")``."""
        return self._built("train")

    @property
    def val_dataset(self) -> Dataset:
        """The validation split, not augmented; built by ``setup("fit")`` or ``setup("validate")``."""
        return self._built("val")

    @property
    def test_dataset(self) -> Dataset:
        """The test split, not augmented; built by ``setup("test")``."""
        return self._built("test")

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        seed = run_seed()
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(dataset, seed) if shuffle else None,
            # the loader's own generator draws the workers' base seed, so that the global generator
            # (seeded per epoch, see callbacks.EpochSeeding) alone draws the augmentations made in
            # this process (num_workers 0); workers' augmentations are not reproduced on resume
            generator=torch.Generator().manual_seed(seed),
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, shuffle=False)


def rand_augment(config: Optional[str], mean: Sequence[float]) -> list:
    """timm's RandAugment for PIL images (``config`` e.g. ``"rand-m9-mstd0.5-inc1"``, timm's
    syntax; the fill colour of its geometric operations is ``mean``); [] for None.

    Raises:
        ValueError: ``config`` is not a RandAugment string timm understands.
    """
    if config is None:
        return []
    from timm.data.auto_augment import rand_augment_transform

    try:
        return [rand_augment_transform(config, {"img_mean": tuple(round(255 * m) for m in mean)})]
    except (AssertionError, KeyError, ValueError, IndexError) as error:
        raise ValueError(f"randaugment {config!r} is not a RandAugment string timm understands, e.g. "
                         f"'rand-m9-mstd0.5-inc1' ({error})") from None
