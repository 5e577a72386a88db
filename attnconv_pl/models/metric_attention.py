"""Multi-head self-attention with a pluggable score: dot product or a learnable (pseudo-)metric.

Metric-attention (arXiv 2412.18288) reads self-attention as a learnable
pseudo-metric followed by similarity-based propagation. The paper's exact formula was not
available; the scores below are **our choice**. For tokens x_i (rows of x, width ``dim``) and one
head h of width d_h = dim / num_heads, the pre-softmax score of query i for key j is

- ``"dot"`` (the baseline, identical to timm's ``Attention``):
  s_ij = <W_q x_i, W_k x_j> / tau
- ``"shared_metric"`` (one shared projection W = W_q per head, a Mahalanobis pseudo-metric of
  rank d_h on the token space):
  s_ij = -||W (x_i - x_j)||^2 / tau
- ``"two_projection"``:
  s_ij = -||W_q x_i - W_k x_j||^2 / tau

then a_ij = softmax_j(s_ij) and the output is proj(concat_h sum_j a_ij W_v x_j), with the values
and the output projection as in the baseline. Biases (``qkv_bias``) are applied to W_q, W_k and
W_v as in timm, except the shared metric projection W, which has none: a bias cancels in
W x_i - W x_j and would be a parameter without gradient.

Temperature: tau = sqrt(d_h) by default (**our choice**: the baseline's scale, so ``"dot"``
reproduces timm exactly), a single scalar per module, optionally learnable through log(tau).
Squared distances are computed as ||a||^2 + ||b||^2 - 2 a.b, clamped at 0, so no
(B, heads, N, N, d_h) tensor is ever built. In the softmax over j the row constant
-||a_i||^2 / tau cancels, so a distance score is the dot score with doubled logits and a
per-key penalty ||b_j||^2 / tau.

Parameter budget, for ``dim`` = C (``proj`` with its bias): ``"dot"`` and ``"two_projection"``
have exactly timm's 4 C^2 + C (+ 3 C with ``qkv_bias``: q, k, v, proj); ``"shared_metric"``
drops the key projection and the query bias: 3 C^2 + C (+ C with ``qkv_bias``, the value bias),
about 25% fewer attention parameters (about 8% fewer per ViT block with MLP ratio 4). No variant
has more parameters than the baseline.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from timm.models.vision_transformer import Attention as TimmAttention
from torch import nn

SCORES = ("dot", "shared_metric", "two_projection")


def pairwise_sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ||a_i - b_j||^2 between the rows of ``a`` and ``b``.

    Args:
        a: (..., N, d) and b: (..., M, d), same leading dimensions.

    Returns:
        (..., N, M), computed as ||a_i||^2 + ||b_j||^2 - 2 a_i.b_j and clamped at 0 (rounding
        can make the expansion slightly negative for near-equal points).
    """
    sq_a = a.pow(2).sum(-1, keepdim=True)
    sq_b = b.pow(2).sum(-1).unsqueeze(-2)
    return (sq_a + sq_b - 2 * a @ b.transpose(-2, -1)).clamp_min(0)


def _additive_mask(
    n: int, like: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool
) -> Optional[torch.Tensor]:
    """Mask as an additive score bias, with the semantics of ``F.scaled_dot_product_attention``.

    A boolean ``attn_mask`` is True where attention is allowed; a float one is added to the
    scores as is; ``is_causal`` lets query i see keys j <= i only and takes precedence.
    """
    if is_causal:
        return like.new_full((n, n), float("-inf")).triu_(1)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        return torch.zeros_like(attn_mask, dtype=like.dtype).masked_fill_(~attn_mask, float("-inf"))
    return attn_mask


class MetricAttention(nn.Module):
    """Multi-head self-attention with the score ``score``; a drop-in for timm's ``Attention``.

    Args:
        dim: token width C (input and output); must be divisible by ``num_heads``.
        num_heads: number of heads H; each has width d_h = C / H.
        score: ``"dot"``, ``"shared_metric"`` or ``"two_projection"`` (see the module docstring).
        tau: temperature, > 0; None means sqrt(d_h).
        learn_tau: learn log(tau) (one scalar) instead of keeping tau fixed.
        qkv_bias: biases on the query, key and value projections (not on the shared metric
            projection, where a bias cancels).
        proj_bias: bias on the output projection.
        attn_drop: dropout on the attention weights.
        proj_drop: dropout after the output projection.

    Projections: ``qkv`` (``nn.Linear(C, 3C)``, laid out as timm's, so a ``"dot"`` module loads a
    timm attention state dict) for ``"dot"`` and ``"two_projection"``; ``metric``
    (``nn.Linear(C, C, bias=False)``) and ``v`` (``nn.Linear(C, C)``) for ``"shared_metric"``.

    Shapes: ``forward(x)`` maps (B, N, C) to (B, N, C); ``scores(x)`` and
    ``attention_weights(x)`` return (B, H, N, N).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        score: str = "dot",
        tau: Optional[float] = None,
        learn_tau: bool = False,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"unknown attention score {score!r}; expected one of {SCORES}")
        if dim % num_heads:
            raise ValueError(
                f"dim={dim} is not divisible by num_heads={num_heads}; choose a head count that "
                f"divides the token width"
            )
        self.score = score
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        tau = math.sqrt(self.head_dim) if tau is None else float(tau)
        if not tau > 0:
            raise ValueError(f"tau must be > 0 (a temperature), got {tau}")
        log_tau = torch.tensor(math.log(tau))
        if learn_tau:
            self.log_tau = nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)

        if score == "shared_metric":
            self.metric = nn.Linear(dim, dim, bias=False)
            self.v = nn.Linear(dim, dim, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    @property
    def tau(self) -> torch.Tensor:
        """The temperature tau, a 0-d tensor."""
        return self.log_tau.exp()

    def forward(
        self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False
    ) -> torch.Tensor:
        """Attend over the tokens of x: (B, N, C) -> (B, N, C).

        ``attn_mask`` (broadcastable to (B, H, N, N); boolean True = attend, or an additive
        float bias) and ``is_causal`` follow ``F.scaled_dot_product_attention``.
        """
        queries, keys, values = self._project(x)
        weights = self._softmax(self._score(queries, keys), attn_mask, is_causal)
        out = self.attn_drop(weights) @ values
        out = out.transpose(1, 2).reshape(x.shape)
        return self.proj_drop(self.proj(out))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-softmax scores s_ij of every head, before any mask: (B, N, C) -> (B, H, N, N)."""
        queries, keys, _ = self._project(x)
        return self._score(queries, keys)

    def attention_weights(
        self, x: torch.Tensor, attn_mask: Optional[torch.Tensor] = None, is_causal: bool = False
    ) -> torch.Tensor:
        """Attention weights a_ij (softmax over keys j, before dropout): (B, H, N, N)."""
        return self._softmax(self.scores(x), attn_mask, is_causal)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-head queries, keys and values, each (B, H, N, d_h).

        For ``"shared_metric"`` queries and keys are the same tensor W x.
        """
        batch, tokens, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            per_head = t.reshape(batch, tokens, -1, self.num_heads, self.head_dim)
            return per_head.permute(2, 0, 3, 1, 4)

        if self.score == "shared_metric":
            metric = heads(self.metric(x))[0]
            return metric, metric, heads(self.v(x))[0]
        queries, keys, values = heads(self.qkv(x)).unbind(0)
        return queries, keys, values

    def _score(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """(B, H, N, d_h) queries and keys -> (B, H, N, N) scores, divided by tau."""
        if self.score == "dot":
            similarity = queries @ keys.transpose(-2, -1)
        else:
            similarity = -pairwise_sq_dists(queries, keys)
        return similarity / self.tau

    @staticmethod
    def _softmax(
        scores: torch.Tensor, attn_mask: Optional[torch.Tensor], is_causal: bool
    ) -> torch.Tensor:
        """Softmax over keys of the (B, H, N, N) scores plus the mask's additive bias."""
        bias = _additive_mask(scores.shape[-1], scores, attn_mask, is_causal)
        return (scores if bias is None else scores + bias).softmax(dim=-1)


def _check_plain_timm_attention(attn: nn.Module, where: str) -> None:
    """Raise unless ``attn`` is a timm ``Attention`` that MetricAttention can stand in for."""
    if not isinstance(attn, TimmAttention):
        raise TypeError(
            f"{where} is a {type(attn).__name__}, expected timm's "
            f"timm.models.vision_transformer.Attention; use_metric_attention only swaps that class"
        )
    dim = attn.qkv.in_features
    unsupported = {
        "qk_norm": not isinstance(attn.q_norm, nn.Identity),
        "scale_norm": not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity),
        "gated": getattr(attn, "gate", None) is not None,
        "attn_head_dim != dim / num_heads": attn.num_heads * attn.head_dim != dim,
        "dim_out != dim": attn.proj.out_features != dim,
    }
    used = [name for name, on in unsupported.items() if on]
    if used:
        raise ValueError(
            f"{where} uses {', '.join(used)}, which MetricAttention does not implement; "
            f"build the ViT without these options to use metric-attention"
        )


def _metric_attention_like(attn: TimmAttention, score: str, **kwargs) -> MetricAttention:
    """A MetricAttention with the width, heads, biases, dropouts and weights of ``attn``.

    Weights are copied where shapes allow: qkv and proj for ``"dot"`` and ``"two_projection"``
    (so ``"dot"`` computes exactly what ``attn`` did); W = the query rows of qkv, the value rows
    and proj for ``"shared_metric"`` (the key rows have no counterpart and are dropped).
    ``kwargs`` (tau, learn_tau, dropouts, ...) override what is taken from ``attn``.
    """
    dim = attn.qkv.in_features
    settings = dict(
        num_heads=attn.num_heads,
        qkv_bias=attn.qkv.bias is not None,
        proj_bias=attn.proj.bias is not None,
        attn_drop=attn.attn_drop.p,
        proj_drop=attn.proj_drop.p,
    )
    new = MetricAttention(dim, score=score, **{**settings, **kwargs})
    new.to(device=attn.qkv.weight.device, dtype=attn.qkv.weight.dtype).train(attn.training)
    with torch.no_grad():
        new.proj.load_state_dict(attn.proj.state_dict())
        if score == "shared_metric":
            query_rows, _, value_rows = attn.qkv.weight.chunk(3)
            new.metric.weight.copy_(query_rows)
            new.v.weight.copy_(value_rows)
            if new.v.bias is not None:
                new.v.bias.copy_(attn.qkv.bias.chunk(3)[2])
        else:
            new.qkv.load_state_dict(attn.qkv.state_dict())
    return new


def use_metric_attention(vit_model: nn.Module, score: str, **kwargs) -> nn.Module:
    """Replace the attention of every block of a timm ViT by MetricAttention, in place.

    Args:
        vit_model: a timm ``VisionTransformer`` (any model whose ``blocks[i].attn`` are timm
            ``Attention`` modules without qk_norm, scale_norm or gating).
        score: ``"dot"``, ``"shared_metric"`` or ``"two_projection"``.
        **kwargs: further MetricAttention arguments (``tau``, ``learn_tau``, ...); width, heads,
            biases and dropouts are taken from each replaced module unless given here.

    Returns:
        ``vit_model`` itself, with every ``blocks[i].attn`` a MetricAttention of the same width
        and heads, on the same device and dtype, holding the old weights where shapes allow
        (with ``score="dot"`` the model computes exactly what it computed before).
    """
    blocks = getattr(vit_model, "blocks", None)
    if not isinstance(blocks, nn.Sequential | nn.ModuleList) or len(blocks) == 0:
        raise TypeError(
            f"use_metric_attention expects a timm VisionTransformer with blocks[i].attn; "
            f"{type(vit_model).__name__} has no non-empty `blocks` sequence. Pass a model built "
            f"by timm (e.g. timm.models.vision_transformer.VisionTransformer)"
        )
    for index, block in enumerate(blocks):
        where = f"{type(vit_model).__name__}.blocks[{index}].attn"
        _check_plain_timm_attention(getattr(block, "attn", None), where)
    for block in blocks:
        block.attn = _metric_attention_like(block.attn, score, **kwargs)
    return vit_model
