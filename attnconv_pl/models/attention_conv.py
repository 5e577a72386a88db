"""The one-layer attention network and its convolution twin (arXiv 2410.17628).

Both models are ``stem -> mixer -> norm -> mean over positions -> head`` and differ only in
``mixer``, so their layer names line up for probing:

- ``stem``: ``Conv2d(in_chans, dim, kernel=patch, stride=patch)``, turning a
  (B, in_chans, H, W) image into a (B, dim, H/patch, W/patch) grid of T tokens.
- ``mixer``: pre-norm residual ``x + f(LayerNorm(x))`` on the grid, (B, dim, h, w) in and out.
  ``attention_net``: f is multi-head self-attention over the T tokens, with a learned
  positional embedding added to the tokens first. ``conv_net``: f is one 3x3 convolution of
  the same width.
- ``norm``: LayerNorm over channels at every position; ``head``: linear classifier on the mean
  over positions.

Parameter match (our choice): attention has 4 d^2 + 4 d parameters plus T d for the positional
embedding; a dense 3x3 convolution would have 9 d^2 + d, about twice as many. The convolution
is therefore grouped, ``groups=2`` by default (4.5 d^2 + d): at the default width d = 128 and
T = 64 tokens the two mixers differ by 0.5% and the whole models by less than that.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._features import ProbePoint, attach_feature_info
from ._patching import resolve_patch_size
from ._registry import register_model
from .metric_attention import MetricAttention


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, h, w) grid, at every position separately."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SelfAttentionMixer(nn.Module):
    """Pre-norm residual multi-head self-attention over the tokens of a (B, dim, h, w) grid.

    ``tokens = grid + pos_embed``; ``out = tokens + MHA(LayerNorm(tokens))``; returned as a
    (B, dim, h, w) grid again. The residual branch ``attn`` outputs tokens (B, h * w, dim).
    """

    residual_branch = "attn"
    """Name of the sub-module whose output is the residual branch MHA(LayerNorm(tokens))."""

    def __init__(self, dim: int, num_heads: int, grid_size: int, score: str = "dot",
                 tau: float | None = None, learn_tau: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"dim={dim} must be divisible by num_heads={num_heads}; choose num_heads "
                "among the divisors of dim"
            )
        self.pos_embed = nn.Parameter(torch.zeros(1, grid_size * grid_size, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.norm = nn.LayerNorm(dim)
        self.attn = MetricAttention(dim, num_heads, score=score, tau=tau, learn_tau=learn_tau, qkv_bias=True)

    def forward(self, grid: Tensor) -> Tensor:
        batch, dim, height, width = grid.shape
        tokens = grid.flatten(2).transpose(1, 2) + self.pos_embed
        normed = self.norm(tokens)
        attended = self.attn(normed)
        return (tokens + attended).transpose(1, 2).reshape(batch, dim, height, width)


class ConvMixer(nn.Module):
    """Pre-norm residual 3x3 convolution (padding 1, ``groups`` groups) on a (B, dim, h, w) grid."""

    residual_branch = "conv"
    """Name of the sub-module whose output is the residual branch conv(LayerNorm(grid))."""

    def __init__(self, dim: int, groups: int) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=groups)

    def forward(self, grid: Tensor) -> Tensor:
        return grid + self.conv(self.norm(grid))


class SingleMixerNet(nn.Module):
    """``stem -> mixer -> norm -> mean over positions -> head``; logits of shape (B, num_classes).

    Probe points: ``stem``, ``mixer`` (its ``residual_branch`` as extras ``residual``) and
    ``norm``, all (B, dim, h, w) grids at reduction = patch size; ``head``, the logits.
    """

    def __init__(self, stem: nn.Conv2d, mixer: SelfAttentionMixer | ConvMixer, num_classes: int) -> None:
        super().__init__()
        dim, patch = stem.out_channels, stem.stride[0]
        self.stem = stem
        self.mixer = mixer
        self.norm = ChannelLayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        attach_feature_info(self, [
            ProbePoint("stem", "stem", dim, patch),
            ProbePoint("mixer", "mixer", dim, patch, extras={"residual": f"mixer.{mixer.residual_branch}"}),
            ProbePoint("norm", "norm", dim, patch),
            ProbePoint("head", "head", num_classes),
        ])

    def forward(self, images: Tensor) -> Tensor:
        grid = self.norm(self.mixer(self.stem(images)))
        return self.head(grid.mean(dim=(2, 3)))


def _stem(in_chans: int, dim: int, img_size: int, patch_size: int | None) -> tuple[nn.Conv2d, int]:
    """The patch stem and the side of the token grid it produces."""
    patch = resolve_patch_size(img_size, patch_size)
    return nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch), img_size // patch


@register_model
def attention_net(
    num_classes: int,
    in_chans: int,
    img_size: int,
    dim: int = 128,
    num_heads: int = 4,
    patch_size: int | None = None,
    score: str = "dot",
    tau: float | None = None,
    learn_tau: bool = False,
) -> SingleMixerNet:
    """One multi-head self-attention layer (``dim`` wide, ``num_heads`` heads) on image patches.

    ``patch_size=None`` picks ``img_size // 8`` (an 8 x 8 grid of 64 tokens). ``score`` chooses
    dot-product attention or a metric-attention score (``shared_metric``, ``two_projection``) with
    temperature ``tau`` (see :class:`~attnconv_pl.models.metric_attention.MetricAttention`).
    """
    stem, grid_size = _stem(in_chans, dim, img_size, patch_size)
    mixer = SelfAttentionMixer(dim, num_heads, grid_size, score=score, tau=tau, learn_tau=learn_tau)
    return SingleMixerNet(stem, mixer, num_classes)


@register_model
def conv_net(
    num_classes: int,
    in_chans: int,
    img_size: int,
    dim: int = 128,
    groups: int = 2,
    patch_size: int | None = None,
) -> SingleMixerNet:
    """One 3x3 convolution layer (``dim`` wide, ``groups`` groups) on image patches.

    ``groups=2`` matches the parameter count of :func:`attention_net` at the same ``dim``
    (within 1% at the defaults); ``patch_size=None`` picks ``img_size // 8``.
    """
    stem, _ = _stem(in_chans, dim, img_size, patch_size)
    return SingleMixerNet(stem, ConvMixer(dim, groups), num_classes)
