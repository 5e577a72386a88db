"""Compact Convolutional Transformers (CCT, Hassani et al. 2021, arXiv 2104.05704).

Written here, structurally equal to the public CCT code (SHI-Labs/Compact-Transformers):

- a convolutional tokenizer: ``n_conv_layers`` x (Conv2d k x k, stride s, padding p, no bias;
  ReLU; MaxPool 3 x 3, stride 2, padding 1), the last conv ``embed_dim`` wide and the ones
  before it ``conv_channels`` (public: 64) wide, flattened to tokens (B, N, D);
- a learnable positional embedding (1, N, D) (truncated normal, std 0.2) and dropout;
- ``depth`` encoder layers, each (public ``TransformerEncoderLayer``)::

      x = x + drop_path(attn(pre_norm(x)))
      x = norm1(x)                        # the "post-attention norm"
      x = x + drop_path(mlp(x))           # mlp = fc2(drop(GELU(fc1(x)))), then dropout

  with the attention a timm ``Attention`` (no qkv bias, as public CCT) and the stochastic
  depth rate rising linearly from 0 to ``drop_path_rate`` over the layers;
- a final LayerNorm, sequence pooling (softmax over tokens of a ``Linear(D, 1)`` score,
  weighted sum of the tokens: (B, N, D) -> (B, D)) and a linear classifier. No class token.

Initialisation as public CCT: Linear weights truncated normal (std 0.02, bias 0), conv weights
Kaiming normal. Regularisation defaults: attention dropout 0.1 and other dropout 0 as public CCT,
but stochastic depth 0 (**our choice**; public CCT: 0.1, pass ``drop_path_rate=0.1``): as in our
ViTs, and because a per-sample drop path on a tiny batch can drop a whole branch of every input,
leaving its parameters without gradient. Weights are always freshly initialised: nothing is
downloaded. ``cct_7_3x1_32`` has 3,760,139 parameters with 10 classes (paper: 3.76 M).

``score``, ``tau`` and ``learn_tau`` select metric-attention as in the ViTs (:func:`build_cct`).

Single-node probe points (arXiv 2501.12900): every attention carries ``nodes``, a
:class:`HeadNodes` (an ``nn.Identity``) applied to the concatenated head outputs just before
``proj``; its output (B, N, D) are the MHA nodes, head h owning channels [h D/H, (h+1) D/H), and
its ``num_heads`` attribute is H. The FF nodes are the output of ``mlp.fc2`` (B, N, D), before
dropout and the residual sum.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import DropPath, Mlp
from timm.models.vision_transformer import Attention
from torch import nn

from ._features import ProbePoint, attach_feature_info
from ._registry import register_model
from .metric_attention import use_metric_attention
from .vit import pop_attention_options

POOL_KERNEL, POOL_STRIDE, POOL_PADDING = 3, 2, 1
"""The tokenizer's max-pool after every conv (public CCT's defaults)."""


def tokens_per_side(img_size: int, n_conv_layers: int, kernel_size: int, stride: int, padding: int) -> int:
    """Side of the tokenizer's output grid for ``img_size`` px images (N = side ** 2 tokens).

    Raises:
        ValueError: the image is too small for the tokenizer (the grid would be empty).
    """
    side = img_size
    for _ in range(n_conv_layers):
        side = (side + 2 * padding - kernel_size) // stride + 1
        side = (side + 2 * POOL_PADDING - POOL_KERNEL) // POOL_STRIDE + 1
    if side < 1:
        raise ValueError(
            f"a {img_size} px image leaves no tokens after {n_conv_layers} conv layer(s) "
            f"(kernel {kernel_size}, stride {stride}, padding {padding}) each max-pooled; "
            "use larger images or fewer conv layers"
        )
    return side


class ConvTokenizer(nn.Module):
    """Convolutional tokenizer: (B, in_chans, H, W) images -> (B, N, embed_dim) tokens.

    Each of ``n_conv_layers`` stages is ``conv_layers.<i>`` = Sequential(Conv2d without bias,
    ReLU, MaxPool2d 3 x 3 stride 2 padding 1); the last is ``embed_dim`` wide, the others
    ``conv_channels``. Tokens are the grid positions in row-major order.
    """

    def __init__(
        self, in_chans: int, embed_dim: int, n_conv_layers: int, kernel_size: int, stride: int,
        padding: int, conv_channels: int,
    ) -> None:
        super().__init__()
        widths = [in_chans, *[conv_channels] * (n_conv_layers - 1), embed_dim]
        self.conv_layers = nn.Sequential(*(
            nn.Sequential(
                nn.Conv2d(widths[i], widths[i + 1], kernel_size, stride=stride, padding=padding, bias=False),
                nn.ReLU(),
                nn.MaxPool2d(POOL_KERNEL, stride=POOL_STRIDE, padding=POOL_PADDING),
            )
            for i in range(n_conv_layers)
        ))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, D)."""
        return self.conv_layers(images).flatten(2).transpose(1, 2)


class HeadNodes(nn.Identity):
    """The MHA nodes: an identity on the concatenated head outputs (B, N, D), a hook point.

    Head h of ``num_heads`` owns the contiguous channels [h D/H, (h+1) D/H). Fed by a forward
    pre-hook on the attention's ``proj`` (see :func:`attach_head_nodes`), so any attention that
    calls ``proj`` on the concatenated heads (timm's ``Attention``, ``MetricAttention``) gets it
    without a change to its forward.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads

    def feed_proj(self, proj: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """Forward pre-hook of ``proj``: pass its input (the concatenated heads) through self.

        A bound method (not a closure), so a deep copy or a pickle of the model keeps the hook
        pointing at the copy's own ``nodes``.
        """
        return (self(args[0]), *args[1:])


def attach_head_nodes(attn: nn.Module) -> None:
    """Give ``attn`` (an attention with ``num_heads`` and ``proj``) a :class:`HeadNodes` ``nodes``.

    Call it again after replacing the attention module (the hook lives on the old ``proj``).
    """
    attn.nodes = HeadNodes(attn.num_heads)
    attn.proj.register_forward_pre_hook(attn.nodes.feed_proj)


class EncoderLayer(nn.Module):
    """Public CCT's encoder layer, (B, N, D) -> (B, N, D), see the module docstring.

    Modules: ``pre_norm``, ``attn`` (timm ``Attention``), ``norm1`` (post-attention norm),
    ``mlp`` (timm ``Mlp``: fc1, GELU, dropout, fc2, dropout) and ``drop_path``.
    """

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, drop_rate: float, attn_drop_rate: float,
        drop_path_rate: float,
    ) -> None:
        super().__init__()
        self.pre_norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=False, attn_drop=attn_drop_rate, proj_drop=drop_rate)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, drop=drop_rate)
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        x = self.norm1(x + self.drop_path(self.attn(self.pre_norm(x))))
        return x + self.drop_path(self.mlp(x))


class SequencePool(nn.Module):
    """Attention pooling: (B, N, D) tokens -> (B, D), sum_n softmax_n(score(x_n)) x_n.

    ``score`` is a ``Linear(D, 1)``; the weights sum to 1 over the tokens of each input. Over a
    single token (N = 1, e.g. ``cct_7_7x2_224`` on 16 px images) the pool is that token and has
    no ``score``: a softmax over one token is 1 whatever the score, which would get no gradient.
    """

    def __init__(self, dim: int, num_tokens: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1) if num_tokens > 1 else None

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, D)."""
        if self.score is None:
            return tokens[:, 0]
        weights = self.score(tokens).softmax(dim=1)
        return (weights * tokens).sum(dim=1)


class CompactTransformer(nn.Module):
    """A CCT for ``img_size`` px images: tokenizer, encoder, sequence pool, classifier.

    Args:
        num_classes, in_chans, img_size: as for every registered model.
        embed_dim: token width D.
        depth: number of encoder layers.
        num_heads: attention heads H (must divide D).
        mlp_ratio: hidden width of the MLP over D.
        n_conv_layers, kernel_size, stride, padding: the tokenizer's conv stages; stride and
            padding default to public CCT's max(1, k // 2 - 1) and max(1, k // 2) for kernel k
            (3: stride 1, padding 1; 7: stride 2, padding 3).
        conv_channels: width of the conv stages before the last (public CCT: 64).
        drop_rate: dropout after the positional embedding, in the MLP and after ``proj``.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last layer (linear from 0 at the first).

    Modules: ``tokenizer``, ``pos_drop``, ``blocks`` (:class:`EncoderLayer`), ``norm``,
    ``pool`` (:class:`SequencePool`), ``head``; parameter ``pos_embed`` (1, N, D).
    """

    def __init__(
        self,
        num_classes: int,
        in_chans: int,
        img_size: int,
        *,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        n_conv_layers: int,
        kernel_size: int,
        stride: int | None = None,
        padding: int | None = None,
        conv_channels: int = 64,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.1,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}; choose a head "
                "count that divides the token width"
            )
        stride = max(1, kernel_size // 2 - 1) if stride is None else stride
        padding = max(1, kernel_size // 2) if padding is None else padding
        side = tokens_per_side(img_size, n_conv_layers, kernel_size, stride, padding)
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.tokenizer = ConvTokenizer(in_chans, embed_dim, n_conv_layers, kernel_size, stride, padding, conv_channels)
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.Sequential(*(
            EncoderLayer(embed_dim, num_heads, mlp_ratio, drop_rate, attn_drop_rate, rate) for rate in rates
        ))
        self.norm = nn.LayerNorm(embed_dim)
        self.pool = SequencePool(embed_dim, side * side)
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, img_size, img_size) images -> (B, num_classes) logits."""
        tokens = self.pos_drop(self.tokenizer(images) + self.pos_embed)
        return self.head(self.pool(self.norm(self.blocks(tokens))))


def _init_weights(module: nn.Module) -> None:
    """Public CCT's initialisation: Linear trunc-normal (std 0.02) with zero bias, conv Kaiming normal."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight)


def build_cct(
    model_name: str,
    num_classes: int,
    in_chans: int,
    img_size: int,
    defaults: dict[str, Any],
    overrides: dict[str, Any],
) -> CompactTransformer:
    """A :class:`CompactTransformer` from ``defaults`` updated by ``overrides``, with its probe points.

    Probe points, in forward order: ``tokenizer`` (``stem``), then per layer i
    ``blocks.i.attn.nodes`` (``mha_nodes``), ``blocks.i.mlp.fc2`` (``ff_nodes``) and ``blocks.i``
    (``block``, extras ``attn`` and ``mlp``), then ``norm``, ``pool`` (B, D) and ``head``
    (logits). All but the last two are token sequences (B, N, D). The head count of an
    ``mha_nodes`` point is ``model.get_submodule(point.module).num_heads``.

    ``score``, ``tau`` and ``learn_tau`` (any of them) replace every layer's attention by
    ``MetricAttention`` (``use_metric_attention``; with ``score="dot"`` it computes exactly what
    timm's ``Attention`` does); the new attentions get their own ``nodes``.

    Raises:
        TypeError: an override is not a :class:`CompactTransformer` or attention option.
    """
    attention = pop_attention_options(model_name, CompactTransformer, overrides)
    model = CompactTransformer(num_classes, in_chans, img_size, **{**defaults, **overrides})
    if attention:
        use_metric_attention(model, **({"score": "dot"} | attention))
    for block in model.blocks:
        attach_head_nodes(block.attn)
    width = model.embed_dim
    attach_feature_info(model, [
        ProbePoint("tokenizer", "stem", width, tokens=True),
        *(
            point
            for i in range(len(model.blocks))
            for point in (
                ProbePoint(f"blocks.{i}.attn.nodes", "mha_nodes", width, tokens=True),
                ProbePoint(f"blocks.{i}.mlp.fc2", "ff_nodes", width, tokens=True),
                ProbePoint(f"blocks.{i}", "block", width, tokens=True,
                           extras={"attn": f"blocks.{i}.attn", "mlp": f"blocks.{i}.mlp"}),
            )
        ),
        ProbePoint("norm", "norm", width, tokens=True),
        ProbePoint("pool", "pool", width),
        ProbePoint("head", "head", num_classes),
    ])
    return model


CCT_7 = {"embed_dim": 256, "depth": 7, "num_heads": 4, "mlp_ratio": 2.0}
"""The encoder of public CCT-7: 7 layers, width 256, 4 heads, MLP ratio 2."""


@register_model
def cct_7_3x1_32(num_classes: int, in_chans: int, img_size: int, **overrides: Any) -> CompactTransformer:
    """CCT-7/3x1 (CIFAR): CCT-7, one 3x3 conv (stride 1); 256 tokens at 32 px.

    ``overrides`` are :class:`CompactTransformer` options and ``score``, ``tau``, ``learn_tau``.
    """
    defaults = {**CCT_7, "n_conv_layers": 1, "kernel_size": 3}
    return build_cct("cct_7_3x1_32", num_classes, in_chans, img_size, defaults, overrides)


@register_model
def cct_7_7x2_224(num_classes: int, in_chans: int, img_size: int, **overrides: Any) -> CompactTransformer:
    """CCT-7/7x2 (Flowers-102): CCT-7, two 7x7 convs (stride 2); 196 tokens at 224 px.

    ``overrides`` are :class:`CompactTransformer` options and ``score``, ``tau``, ``learn_tau``.
    """
    defaults = {**CCT_7, "n_conv_layers": 2, "kernel_size": 7}
    return build_cct("cct_7_7x2_224", num_classes, in_chans, img_size, defaults, overrides)


@register_model
def cct_2_3x1_16(num_classes: int, in_chans: int, img_size: int, **overrides: Any) -> CompactTransformer:
    """CPU-sized CCT for 16 px digits (**our choice**, not public CCT-2, which is 128 wide with MLP
    ratio 1): 2 layers, width 64, 2 heads, MLP ratio 2, one 3x3 conv; 64 tokens, 73 k parameters.

    ``overrides`` are :class:`CompactTransformer` options and ``score``, ``tau``, ``learn_tau``.
    """
    defaults = {"embed_dim": 64, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "n_conv_layers": 1, "kernel_size": 3}
    return build_cct("cct_2_3x1_16", num_classes, in_chans, img_size, defaults, overrides)
