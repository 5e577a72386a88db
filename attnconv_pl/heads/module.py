"""The LightningModule of ``train.py`` for a head on frozen token features."""

from __future__ import annotations

import copy
from typing import Any, Literal, Optional

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from attnconv_pl.module import accuracy_metrics, classification_step, warmup_cosine_factor

from .certificate import RANK_TOL, certify
from .fit import lbfgs
from .objective import one_hot, squared_loss, weight_decay
from .registry import ConvexHead, create_head

CERTIFICATE_PREFIX = "certificate"


def certificate_key(name: str) -> str:
    """The logged name of a certificate metric: ``certificate/<name>``."""
    return f"{CERTIFICATE_PREFIX}/{name}"


class HeadModule(pl.LightningModule):
    """Train head ``head`` (:func:`attnconv_pl.heads.create_head`) on token features (B, s, d).

    Its steps log ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_top5`` as
    :class:`~attnconv_pl.module.ClassifierModule` does (``loss`` is the data loss; the training
    step adds the regulariser (beta/2) sum ||theta||^2). The network is ``self.model``, the head.

    After every training epoch, a convex-capable head trained with the squared loss logs its
    certificate (:func:`attnconv_pl.heads.certify`, in float64, on the whole train split of
    ``trainer.datamodule.eval_dataset("train")``): ``certificate/objective``,
    ``certificate/data_loss``, ``certificate/regulariser``, ``certificate/duality_gap`` and
    ``certificate/rank``.

    Args:
        head: a registered head (``attnconv_pl.heads.list_heads()``).
        head_kwargs: its options (``heads``, ``gates``, ``gate_seed``, ``hidden``).
        num_classes: c, linked from the data module by ``train.py``.
        in_chans: the token width d; ``train.py`` links the data module's ``in_chans``, which
            :class:`~attnconv_pl.data.frozen_features.FrozenFeaturesDataModule` sets to d.
        image_size: the number of tokens s, linked likewise (its ``image_size`` is s).
        loss: ``"squared"`` ((1/2) ||y_hat - one_hot(y)||^2, the loss of the convex program) or
            ``"cross_entropy"`` (then no certificate).
        beta: weight of the regulariser.
        optimizer: ``"lbfgs"`` (full batch: give the data module a ``batch_size`` of at least the
            train split; one step per epoch of ``lbfgs_iterations`` iterations) or ``"adamw"``
            (warm-up and cosine decay as ``ClassifierModule``).
        lr: learning rate (L-BFGS: its initial step length).
        lbfgs_iterations: L-BFGS iterations per training step.
        warmup_epochs: AdamW's linear warm-up.
        certificate: log the certificate after every epoch.
        rank_tol: absolute tolerance of the logged rank on singular values.
    """

    def __init__(
        self,
        head: str = "linear_attention",
        head_kwargs: Optional[dict[str, Any]] = None,
        num_classes: int = 10,
        in_chans: int = 8,
        image_size: int = 8,
        loss: Literal["squared", "cross_entropy"] = "squared",
        beta: float = 1e-3,
        optimizer: Literal["lbfgs", "adamw"] = "lbfgs",
        lr: float = 1.0,
        lbfgs_iterations: int = 20,
        warmup_epochs: float = 0.0,
        certificate: bool = True,
        rank_tol: float = RANK_TOL,
    ) -> None:
        super().__init__()
        if loss not in ("squared", "cross_entropy"):
            raise ValueError(f"loss must be 'squared' or 'cross_entropy', got {loss!r}")
        if optimizer not in ("lbfgs", "adamw"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adamw', got {optimizer!r}")
        self.save_hyperparameters()
        self.model = create_head(head, dim=in_chans, num_classes=num_classes, tokens=image_size, **(head_kwargs or {}))
        self.criterion = squared_loss if loss == "squared" else nn.CrossEntropyLoss()
        self.accuracy = accuracy_metrics(num_classes)
        self._train_split: Optional[tuple[Tensor, Tensor]] = None

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits (B, num_classes) of tokens (B, s, d)."""
        return self.model(tokens)

    def training_step(self, batch, batch_idx):
        return classification_step(self, batch, "train") + self.hparams.beta * weight_decay(self.model)

    def validation_step(self, batch, batch_idx):
        classification_step(self, batch, "val")

    def test_step(self, batch, batch_idx):
        classification_step(self, batch, "test")

    def on_train_epoch_end(self) -> None:
        hp = self.hparams
        if not (hp.certificate and hp.loss == "squared" and isinstance(self.model, ConvexHead)):
            return
        tokens, labels = self._train_tensors()
        result = certify(copy.deepcopy(self.model).double(), tokens, one_hot(labels, hp.num_classes, torch.float64),
                         hp.beta, rank_tol=hp.rank_tol)
        for name, value in result.metrics().items():
            self.log(certificate_key(name), value, on_step=False, on_epoch=True)

    def _train_tensors(self) -> tuple[Tensor, Tensor]:
        """The whole un-augmented train split (tokens, labels) on this module's device, loaded once."""
        if self._train_split is None:
            dataset = self.trainer.datamodule.eval_dataset("train")
            tokens, labels = next(iter(DataLoader(dataset, batch_size=len(dataset))))
            self._train_split = tokens.to(self.device, torch.float64), labels.to(self.device)
        return self._train_split

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "lbfgs":
            return lbfgs(self.parameters(), lr=hp.lr, max_iter=hp.lbfgs_iterations)
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=0.0)  # the loss holds the decay
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        warmup_steps = int(total_steps * min(1.0, hp.warmup_epochs / max(1, self.trainer.max_epochs or 1)))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine_factor(step, warmup_steps, total_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
