"""Random seeds that depend only on the run's seed and the epoch, so a resumed run trains as the
uninterrupted one did.

Lightning's ``seed_everything`` seeds the generators once, at the start of the process; after a
resume the generators would continue from that fresh seed rather than from where the
interrupted run left them. Seeding every training epoch from ``(run seed, epoch)`` makes the
random numbers of epoch ``e`` (data order, augmentation, dropout) the same whether the run got
there in one go or through any number of resumes.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

SEED_ENV = "PL_GLOBAL_SEED"
"""Where ``lightning.seed_everything`` (``--seed_everything``) leaves the run's seed; Lightning's
own ``DistributedSampler`` reads it too."""


def run_seed() -> int:
    """The run's global seed (``--seed_everything``), 0 when none was set."""
    return int(os.environ.get(SEED_ENV, 0))


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed for epoch ``epoch`` of a run seeded with ``seed``: distinct epochs and seeds
    give unrelated streams (numpy's ``SeedSequence`` hashes the pair)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def seed_generators(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch's CPU and CUDA generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every CUDA device too
