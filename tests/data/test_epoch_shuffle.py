"""The training order and the per-epoch seeds behind exact resume."""

import random

import numpy as np
import torch

from attnconv_pl.data import DigitsDataModule
from attnconv_pl.data.base import EpochShuffle
from attnconv_pl.data.seeding import epoch_seed, seed_generators
from callbacks import EpochSeeding


def order(sampler: EpochShuffle, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


def test_the_order_depends_only_on_the_seed_and_the_epoch():
    data = list(range(50))
    first, again = EpochShuffle(data, seed=3), EpochShuffle(data, seed=3)
    assert order(first, 4) == order(again, 4) == order(first, 4)  # also when iterated twice
    assert sorted(order(first, 4)) == data
    assert order(first, 4) != order(first, 5)
    assert order(first, 4) != order(EpochShuffle(data, seed=4), 4)
    torch.manual_seed(0)
    assert order(EpochShuffle(data, seed=3), 4) == order(first, 4)  # the global generator plays no part


def test_making_a_training_loader_iterator_leaves_the_global_generator_alone():
    """The augmentations draw from the global generator; creating the iterator (which draws the
    workers' base seed) must not move it, or a resumed run would see other augmentations."""
    datamodule = DigitsDataModule(batch_size=16)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    iter(loader)
    assert torch.equal(torch.rand(3), expected)


def test_epoch_seeds_are_reproducible_and_distinct():
    assert epoch_seed(0, 3) == epoch_seed(0, 3)
    seeds = {epoch_seed(seed, epoch) for seed in range(5) for epoch in range(20)}
    assert len(seeds) == 100 and all(0 <= s < 2**32 for s in seeds)


class FakeTrainer:
    current_epoch = 6


def test_epoch_seeding_puts_every_generator_in_the_state_of_its_epoch(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "11")
    seed_generators(epoch_seed(11, 6))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_generators(123)
    EpochSeeding().on_train_epoch_start(FakeTrainer(), None)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
