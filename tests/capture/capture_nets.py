"""Small networks and inputs shared by the capture tests."""

from __future__ import annotations

import torch
from torch import nn


class TokenMixer(nn.Module):
    """Returns a tuple like nn.MultiheadAttention: (tokens, weights)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(tokens), tokens.mean(dim=-1)


class SmallNet(nn.Module):
    """Conv maps (B, C, H, W) -> tokens (B, T, D) through a tuple-returning layer -> logits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.blocks = nn.ModuleList([TokenMixer(4), TokenMixer(4)])
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.stem(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens)[0]
        return self.head(tokens.mean(dim=1))


def probe_inputs(n: int = 12) -> torch.Tensor:
    return torch.randn(n, 3, 6, 6, generator=torch.Generator().manual_seed(1))
