"""A test callback that saves what each DDP process trained: ``train.py --trainer.callbacks
tests.rank_parameters.SaveRankParameters`` (importable by train.py and its DDP workers, which run
from the repository root)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch


def rank_file(run_dir: Path, rank: int) -> Path:
    return run_dir / f"rank{rank}-parameters.pt"


class SaveRankParameters(pl.Callback):
    """On every process: the first training batch's images and, after training, every parameter.

    Writes ``<run_dir>/rank<R>-parameters.pt`` holding ``{"first_batch": (B, C, H, W) images,
    "parameters": {name: tensor}}`` (CPU copies), so a test can compare the processes' replicas.
    """

    def __init__(self) -> None:
        self.first_batch = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first_batch is None:
            self.first_batch = batch[0].detach().cpu().clone()

    def on_train_end(self, trainer, pl_module) -> None:
        parameters = {name: p.detach().cpu().clone() for name, p in pl_module.named_parameters()}
        torch.save({"first_batch": self.first_batch, "parameters": parameters},
                   rank_file(Path(trainer.default_root_dir), trainer.global_rank))
