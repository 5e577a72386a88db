"""The LightningModule of ``train.py`` for a head on frozen token features."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal, Optional

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader

from attnconv_pl.errors import ConfigError
from attnconv_pl.module import accuracy_metrics, classification_step, warmup_cosine_factor

from ._checks import check_count, check_number
from .certificate import RANK_TOL, Certificate, certify
from .fit import DEFAULT_GAP_TOL, lbfgs, units_per_block
from .objective import one_hot, squared_loss, weight_decay
from .registry import ConvexHead, create_head, head_options

CERTIFICATE_PREFIX = "certificate"
CERTIFICATE_COLUMNS = ("objective", "duality_gap", "rank", "converged")
"""The certificate's numbers in ``metrics.csv``, as columns ``certificate_<name>``."""
OPTION = "--model.init_args"
"""How the command line names the module's arguments, for messages."""


def certificate_key(name: str) -> str:
    """The logged name of a certificate metric: ``certificate/<name>``."""
    return f"{CERTIFICATE_PREFIX}/{name}"


class HeadModule(pl.LightningModule):
    """Train head ``head`` (:func:`attnconv_pl.heads.create_head`) on token features (B, s, d).

    Its steps log ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc``, ``val/acc_top5`` as
    :class:`~attnconv_pl.module.ClassifierModule` does (``loss`` is the data loss; the training
    step adds the regulariser (beta/2) sum ||theta||^2). The network is ``self.model``, the head.

    After the last training step of every epoch, a convex-capable head trained with the squared
    loss logs its certificate (:func:`attnconv_pl.heads.certify`, in float64, on the whole train
    split of ``trainer.datamodule.eval_dataset("train")``): ``certificate/objective``,
    ``certificate/data_loss``, ``certificate/regulariser``, ``certificate/duality_gap``,
    ``certificate/rank`` and ``certificate/converged`` (1 when duality_gap <= gap_tol *
    objective, else 0); ``metrics.csv`` gets them as columns ``certificate_objective``,
    ``certificate_duality_gap``, ``certificate_rank`` and ``certificate_converged``
    (:attr:`metrics_columns`). Training stops at the first converged epoch (the head is then
    within gap_tol of its global optimum); when ``max_epochs`` ends it first, one warning names
    the setting to raise.

    Args:
        head: a registered head (``attnconv_pl.heads.list_heads()``).
        head_kwargs: its options (``heads``, ``gates``, ``gate_seed``, ``hidden``).
        num_classes: c, linked from the data module by ``train.py``.
        in_chans: the token width d; ``train.py`` links the data module's ``in_chans``, which
            :class:`~attnconv_pl.heads.frozen_features.FrozenFeaturesDataModule` sets to d.
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
        certificate: log the certificate after every epoch (and stop on it).
        rank_tol: absolute tolerance of the logged rank on singular values.
        gap_tol: relative duality gap at which training stops.

    Raises:
        ConfigError: a setting out of range (``beta`` < 0 or not finite, ``heads`` < 1, an
            unknown option in ``head_kwargs``, ...), in one line naming it.
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
        gap_tol: float = DEFAULT_GAP_TOL,
    ) -> None:
        super().__init__()
        if loss not in ("squared", "cross_entropy"):
            raise ConfigError(f"{OPTION}.loss must be 'squared' or 'cross_entropy', got {loss!r}")
        if optimizer not in ("lbfgs", "adamw"):
            raise ConfigError(f"{OPTION}.optimizer must be 'lbfgs' or 'adamw', got {optimizer!r}")
        check_number(f"{OPTION}.beta", beta, meaning="the weight decay (beta/2) sum ||theta||^2")
        check_number(f"{OPTION}.lr", lr, strict=True, meaning="the learning rate")
        check_count(f"{OPTION}.lbfgs_iterations", lbfgs_iterations, meaning="L-BFGS iterations per epoch")
        check_number(f"{OPTION}.warmup_epochs", warmup_epochs, meaning="epochs of linear warm-up")
        check_number(f"{OPTION}.rank_tol", rank_tol, meaning="the singular values above it count")
        check_number(f"{OPTION}.gap_tol", gap_tol, strict=True, meaning="the relative duality gap that stops training")
        if head_kwargs is not None and not isinstance(head_kwargs, Mapping):
            raise ConfigError(f"{OPTION}.head_kwargs must be a mapping of the head's options (e.g. {{heads: 8}}), "
                              f"got {head_kwargs!r}")
        head_options(head)  # an unknown head: its own message, which lists the known ones
        self.save_hyperparameters()
        try:
            self.model = create_head(head, dim=in_chans, num_classes=num_classes, tokens=image_size,
                                     **(head_kwargs or {}))
        except ConfigError as error:
            raise ConfigError(f"{OPTION}.head_kwargs: {error}") from error
        self.criterion = squared_loss if loss == "squared" else nn.CrossEntropyLoss()
        self.accuracy = accuracy_metrics(num_classes)
        self._train_split: Optional[tuple[Tensor, Tensor]] = None
        self._certificate: Optional[Certificate] = None

    @property
    def certifies(self) -> bool:
        """Whether this module computes the certificate: a convex-capable head, the squared loss,
        ``certificate`` on."""
        hp = self.hparams
        return hp.certificate and hp.loss == "squared" and isinstance(self.model, ConvexHead)

    @property
    def metrics_columns(self) -> dict[str, str]:
        """The columns this module adds to ``metrics.csv`` (``callbacks.EpochMetrics``), each
        with the name it is logged under: ``certificate_<name>`` for the numbers of
        :data:`CERTIFICATE_COLUMNS` when the module certifies, else none."""
        if not self.certifies:
            return {}
        return {f"{CERTIFICATE_PREFIX}_{name}": certificate_key(name) for name in CERTIFICATE_COLUMNS}

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits (B, num_classes) of tokens (B, s, d)."""
        return self.model(tokens)

    def training_step(self, batch, batch_idx):
        return classification_step(self, batch, "train") + self.hparams.beta * weight_decay(self.model)

    def validation_step(self, batch, batch_idx):
        classification_step(self, batch, "val")

    def test_step(self, batch, batch_idx):
        classification_step(self, batch, "test")

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """After the last step of an epoch: log the certificate, and stop once it holds."""
        if not (self.certifies and self.trainer.is_last_batch):
            return
        hp = self.hparams
        tokens, labels = self._train_tensors()
        result = certify(copy.deepcopy(self.model).double(), tokens, one_hot(labels, hp.num_classes, torch.float64),
                         hp.beta, rank_tol=hp.rank_tol)
        converged = result.relative_gap <= hp.gap_tol
        for name, value in {**result.metrics(), "converged": float(converged)}.items():  # float64: metrics.csv
            self.log(certificate_key(name), torch.tensor(value, dtype=torch.float64, device=self.device),
                     on_step=False, on_epoch=True)
        self._certificate = result
        if converged:
            self.trainer.should_stop = True
            rank_zero_info(f"HeadModule: converged after {self.current_epoch + 1} epochs: the duality gap is "
                           f"{result.relative_gap:.2g} of the objective <= gap_tol {hp.gap_tol:g}; training stops")

    def on_train_end(self) -> None:
        """Warn once when training ended before the certificate's criterion held."""
        result, hp = self._certificate, self.hparams
        if result is None or result.relative_gap <= hp.gap_tol:
            return
        advice = f"raise --trainer.max_epochs ({self.trainer.max_epochs})"
        if hp.optimizer == "lbfgs":
            advice += f" or {OPTION}.lbfgs_iterations ({hp.lbfgs_iterations} per epoch)"
        units = units_per_block(self.model)
        if units is not None and result.rank >= units:
            advice += (f"; the head uses all its {units} units per block, so rank(Z*) may need more: raise "
                       f"{OPTION}.head_kwargs.heads (at most max_rank {self.model.max_rank})")
        rank_zero_warn(f"HeadModule: training ended before the head converged: its duality gap is "
                       f"{result.relative_gap:.3g} of the objective > gap_tol {hp.gap_tol:g} (metrics.csv "
                       f"certificate_converged 0); {advice}")

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
