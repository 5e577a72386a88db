"""Where a model's features are: its probe points, described in the style of timm's ``feature_info``.

Every registered model carries ``model.feature_info``, a list of :class:`ProbePoint` in forward
order, and ``model.probe_layers = probe_layers(model.feature_info)``, the module names alone.
Analyses ask for layers by description (``points_of_kind(model.feature_info, "block")``), not
by guessing module names. timm's entries (``{"module": "layer1.0", "num_chs": 64,
"reduction": 4}``) are extended with a ``kind``, a ``tokens`` flag and named sub-modules.

Kinds (the closed set :data:`KINDS`):

- ``stem``: the first layer, turning the image into a feature map or a token sequence.
- ``block``: a residual block, output ``x + f(x)`` (or several such sums, as in a transformer
  block); its branches are named in ``extras``.
- ``mixer``: a stand-alone residual layer that mixes across positions, ``x + f(LayerNorm(x))``
  with f attention or convolution; ``extras["residual"]`` names f.
- ``norm``: a normalisation of the features after the last block or mixer.
- ``pool``: global pooling, one vector per input.
- ``head``: the classifier; its output is the logits, ``num_chs`` = number of classes.
- ``mha_nodes``: the D concatenated head outputs of a multi-head attention, before its output
  projection, read one by one (single-node analysis, arXiv 2501.12900); head h of H owns the
  channels [h D/H, (h+1) D/H) and the point's module has ``num_heads`` = H. The CCTs have them.
- ``ff_nodes``: the D output nodes of a feed-forward sub-layer (its last linear, before the
  residual sum), read one by one (same analysis). The CCTs have them.

Keys of ``extras`` in use (module names from ``model.named_modules()``):

- ``input``: the state x of ``x + f(x)`` as the sum sees it: the block input, or the
  shortcut's output where the block changes shape (same shape as ``residual``). The CIFAR
  ResNets (``resnet20``, ``resnet56``, ``resnet110``, ``resnet164``) have it.
- ``residual``: the output of the residual branch f of ``x + f(x)``, before the sum (and
  before any gate).
- ``shortcut``: the projection on a block's skip path, only where it is not the identity
  (a ResNet block that changes width or stride).
- ``attn``, ``mlp``: a transformer block's two residual branches, the attention and the
  feed-forward sub-layers (before layer scale and drop-path, both the identity by default).
- ``gate``: the output of a per-channel gate a, shape (B, C, 1, 1), for a block that sums
  ``x + a * f(x)``: the CIFAR ResNets built with ``attn="se"`` or ``attn="step"``, in the
  blocks of ``attn_stages``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from torch import nn

KINDS: Mapping[str, str] = {
    "stem": "the first layer: image to feature map or tokens",
    "block": "a residual block, x + f(x); branches in extras",
    "mixer": "a stand-alone residual layer mixing across positions; extras['residual'] is f",
    "norm": "a normalisation of the features after the last block or mixer",
    "pool": "global pooling, one vector per input",
    "head": "the classifier, output = logits",
    "mha_nodes": "the concatenated head outputs of an attention before its projection, node by node",
    "ff_nodes": "the output of a feed-forward sub-layer before the residual sum, node by node",
}
"""The kinds a :class:`ProbePoint` may have, each with its meaning (see the module docstring)."""


@dataclass(frozen=True)
class ProbePoint:
    """One probe point: a module of the model, what it is, and the shape of its output.

    Attributes:
        module: the module's name in ``model.named_modules()``.
        kind: one of :data:`KINDS`.
        num_chs: the width of the output: C of (B, C, H, W), D of (B, N, D) or (B, D).
        reduction: for a (B, C, H, W) grid, the image side over the grid side
            (H = img_size / reduction); None where the output has no grid: token sequences,
            pooled vectors (a global pool's (B, C, 1, 1) included) and logits.
        tokens: True when the output is a token sequence (B, N, D).
        extras: named sub-modules of this point, e.g. ``{"residual": "layer1.0.bn2"}`` (keys in
            the module docstring). Copied on construction; treat it as read-only.
    """

    module: str
    kind: str
    num_chs: int
    reduction: int | None = None
    tokens: bool = False
    extras: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extras", dict(self.extras))


def attach_feature_info(model: nn.Module, feature_info: Iterable[ProbePoint]) -> None:
    """Set ``model.feature_info`` (a list) and ``model.probe_layers`` derived from it."""
    model.feature_info = list(feature_info)
    model.probe_layers = probe_layers(model.feature_info)


def probe_layers(feature_info: Iterable[ProbePoint]) -> list[str]:
    """The module names of ``feature_info``, in its (forward) order."""
    return [point.module for point in feature_info]


def points_of_kind(feature_info: Iterable[ProbePoint], *kinds: str) -> list[ProbePoint]:
    """The points of ``feature_info`` whose kind is one of ``kinds``, in their order.

    Raises:
        ValueError: a name in ``kinds`` is not in :data:`KINDS` (a typo would select nothing).
    """
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise ValueError(f"unknown probe point kind(s) {unknown}; kinds are: {', '.join(KINDS)}")
    return [point for point in feature_info if point.kind in kinds]
