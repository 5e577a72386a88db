"""Seed the random generators at the start of every training epoch from the run's seed and the epoch."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from attnconv_pl.data.seeding import epoch_seed, run_seed, seed_generators


class EpochSeeding(Callback):
    """Seed Python's, numpy's and torch's generators (CPU and CUDA) before every training epoch
    with ``epoch_seed(run seed, epoch)``.

    Together with the training sampler's per-epoch order (``attnconv_pl.data.base.EpochShuffle``)
    this makes a run resumed from the checkpoint of epoch N train epochs N+1, N+2, ... exactly as
    the uninterrupted run did on the same hardware: nothing random depends on what the process
    did before (a sanity check, probes, a previous epoch). It needs no state in the checkpoint.
    """

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seed_generators(epoch_seed(run_seed(), trainer.current_epoch))
