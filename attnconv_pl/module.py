"""The one LightningModule of attnconv-pl: an image classifier around a registered model."""

from __future__ import annotations

import math
from typing import Any, Literal, Optional

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from attnconv_pl.models import create_model


def warmup_cosine_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate multiplier at optimiser step ``step``.

    Linear warm-up from ``1 / (warmup_steps + 1)`` to 1 over ``warmup_steps`` steps, then a
    half-cosine from 1 down to 0 at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_factor(step: int, warmup_steps: int, total_steps: int, milestones: tuple[float, ...],
                        gamma: float = 0.1) -> float:
    """Learning-rate multiplier of the step schedule: the same linear warm-up, then ``gamma`` to
    the power of the number of ``milestones`` (fractions of ``total_steps``) already passed
    (He et al. 2016's CIFAR schedule: x0.1 at 50% and 75% of training)."""
    if step < warmup_steps:
        return warmup_cosine_factor(step, warmup_steps, total_steps)
    return gamma ** sum(step >= milestone * total_steps for milestone in milestones)


def accuracy_metrics(num_classes: int) -> nn.ModuleDict:
    """The accuracies :func:`classification_step` logs: ``<stage>_acc`` (train, val, test) and
    ``<stage>_acc_top5`` (val, test; top-min(5, c)).

    Keys are "<stage>_acc" because nn.Module reserves the name "train"; "micro" is the fraction
    of inputs classified correctly (torchmetrics' default, "macro", averages per-class accuracies).
    """
    top5 = min(5, num_classes)
    return nn.ModuleDict(
        {f"{stage}_acc": MulticlassAccuracy(num_classes, top_k=1, average="micro")
         for stage in ("train", "val", "test")}
        | {f"{stage}_acc_top5": MulticlassAccuracy(num_classes, top_k=top5, average="micro")
           for stage in ("val", "test")}
    )


def classification_step(module: pl.LightningModule, batch: tuple[torch.Tensor, torch.Tensor],
                        stage: str) -> torch.Tensor:
    """The loss ``module.criterion(module(inputs), labels)`` of one batch, logged as
    ``<stage>/loss`` with the accuracies ``<stage>/acc`` and ``<stage>/acc_top5`` of
    ``module.accuracy`` (:func:`accuracy_metrics`): epoch means over every process's inputs.
    The training loss of each step is logged too, as ``train/loss_step`` (this process's batch)."""
    inputs, labels = batch
    logits = module(inputs)
    loss = module.criterion(logits, labels)
    if stage == "train":
        module.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
    module.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
    for name in ("acc", "acc_top5"):
        metric = module.accuracy[f"{stage}_{name}"] if f"{stage}_{name}" in module.accuracy else None
        if metric is not None:
            metric(logits, labels)
            module.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "acc")
    return loss


class ClassifierModule(pl.LightningModule):
    """Cross-entropy image classifier around ``create_model(arch, ...)``.

    Args:
        arch: registered model name (``attnconv_pl.models.list_models()``).
        arch_kwargs: extra keyword arguments of that model's factory (widths, depth, ...). On the
            command line ``--model.init_args.arch_kwargs.KEY VALUE`` sets one key and keeps the
            config's others; ``--model.init_args.arch_kwargs '{KEY: VALUE}'`` replaces the whole mapping.
        num_classes, in_chans, image_size: linked from the data module by ``train.py``.
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov, with ``momentum``).
        lr: peak learning rate, reached after ``warmup_epochs`` of linear warm-up, then decayed
            by ``schedule`` (per optimiser step).
        schedule: ``"cosine"`` (to zero at the end of training) or ``"steps"`` (x0.1 at each of
            ``milestones``).
        milestones: fractions of training at which the ``steps`` schedule divides the rate by 10.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        label_smoothing: cross-entropy label smoothing in [0, 1).

    Every argument is saved as a hyper-parameter, so ``ClassifierModule.load_from_checkpoint(path)``
    rebuilds the model from the checkpoint alone. The network is ``self.model``; layer names of
    probes refer to ``self.model.named_modules()``.
    """

    def __init__(
        self,
        arch: str = "conv_net",
        arch_kwargs: Optional[dict[str, Any]] = None,
        num_classes: int = 10,
        in_chans: int = 3,
        image_size: int = 32,
        optimizer: Literal["adamw", "sgd"] = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        momentum: float = 0.9,
        warmup_epochs: float = 1.0,
        label_smoothing: float = 0.0,
        schedule: Literal["cosine", "steps"] = "cosine",
        milestones: tuple[float, ...] = (0.5, 0.75),
    ) -> None:
        super().__init__()
        if not all(0 < milestone < 1 for milestone in milestones):
            raise ValueError("milestones are fractions of training in (0, 1), e.g. [0.5, 0.75]; "
                             f"got {list(milestones)}")
        self.save_hyperparameters()
        self.model = create_model(
            arch, num_classes=num_classes, in_chans=in_chans, img_size=image_size, **(arch_kwargs or {})
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.accuracy = accuracy_metrics(num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, C, H, W)."""
        return self.model(images)

    def training_step(self, batch, batch_idx):
        return classification_step(self, batch, "train")

    def validation_step(self, batch, batch_idx):
        classification_step(self, batch, "val")

    def test_step(self, batch, batch_idx):
        classification_step(self, batch, "test")

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "adamw":
            optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay, nesterov=True
            )
        else:
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {hp.optimizer!r}")
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        max_epochs = max(1, self.trainer.max_epochs or 1)
        warmup_steps = int(total_steps * min(1.0, hp.warmup_epochs / max_epochs))
        milestones = tuple(getattr(hp, "milestones", (0.5, 0.75)))
        if getattr(hp, "schedule", "cosine") == "steps":
            factor = lambda step: warmup_steps_factor(step, warmup_steps, total_steps, milestones)  # noqa: E731
        else:
            factor = lambda step: warmup_cosine_factor(step, warmup_steps, total_steps)  # noqa: E731
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
