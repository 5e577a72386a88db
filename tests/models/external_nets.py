"""Networks that live outside attnconv-pl, built by import path (``external_nets:TinyConvNet``) in
tests: training runs import them with this folder on PYTHONPATH."""

from __future__ import annotations

import torch
from torch import nn


class TinyConvNet(nn.Module):
    """Two 3x3 convolutions, a global mean and a linear head; it names its ``probe_layers``.

    Args:
        num_classes, in_chans: shape arguments, passed by ``create_model`` because they are named here.
        width: channels of both convolutions.
    """

    probe_layers = ["conv1", "conv2", "head"]

    def __init__(self, num_classes: int, in_chans: int, width: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.head = nn.Linear(width, num_classes)
        self.width = width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) of images (B, in_chans, H, W)."""
        features = torch.relu(self.conv2(torch.relu(self.conv1(images))))
        return self.head(features.mean(dim=(2, 3)))


class UndescribedNet(nn.Module):
    """A network that declares no probe layers; it takes ``img_size`` to build its linear layer."""

    def __init__(self, num_classes: int, in_chans: int, img_size: int) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.linear = nn.Linear(in_chans * img_size * img_size, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flat(images))


def tiny_conv_net(num_classes: int, **options) -> TinyConvNet:
    """A factory function instead of a class: receives only ``num_classes`` by name (and options)."""
    return TinyConvNet(num_classes, in_chans=options.pop("channels", 1), **options)


NOT_A_MODEL = 3
