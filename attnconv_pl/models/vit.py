"""Small Vision Transformers (timm ``VisionTransformer``) for 16-32 px images.

Sizes (our choice, documented): both variants have 6 blocks and differ only in width, as
timm's ViT-Tiny and ViT-Small do: ``vit_tiny`` is 192 wide with 3 heads (about 2.7 M
parameters), ``vit_small`` 384 wide with 6 heads (about 10.7 M). The patch size defaults to
``img_size // 8`` (4 px at 32 px: an 8 x 8 grid of 64 tokens plus the class token). Any other
``VisionTransformer`` option (``depth``, ``embed_dim``, ``num_heads``, ``patch_size``,
``mlp_ratio``, ``drop_path_rate``, ``global_pool``, ...) can be overridden by keyword. Weights
are always freshly initialised: nothing is downloaded.

The model stays a standard timm ``VisionTransformer`` (a timm ``Attention`` at
``blocks.<i>.attn``) unless ``score`` asks for metric-attention.
"""

from __future__ import annotations

import inspect
from typing import Any

from timm.models.vision_transformer import VisionTransformer

from ._features import ProbePoint, attach_feature_info
from ._patching import resolve_patch_size
from ._registry import register_model, reject_unknown_kwargs
from .metric_attention import use_metric_attention

ATTENTION_OPTIONS = ("score", "tau", "learn_tau")
"""Options of the attention in every block (metric-attention when not plain dot-product)."""

def pop_attention_options(model_name: str, network: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """Remove the metric-attention options (``ATTENTION_OPTIONS``) from a transformer factory's
    ``overrides`` and return them; what is left must be options of ``network``'s constructor
    (besides ``num_classes``, ``in_chans`` and ``img_size``, which every factory sets).

    Raises:
        TypeError: an override is neither a ``network`` option nor an attention option.
    """
    attention = {key: overrides.pop(key) for key in ATTENTION_OPTIONS if key in overrides}
    own = [name for name in inspect.signature(network.__init__).parameters
           if name not in ("self", "num_classes", "in_chans", "img_size")]
    reject_unknown_kwargs(model_name, overrides, [*own, *ATTENTION_OPTIONS])
    return attention


def build_vit(
    model_name: str,
    num_classes: int,
    in_chans: int,
    img_size: int,
    defaults: dict[str, Any],
    overrides: dict[str, Any],
) -> VisionTransformer:
    """A ``VisionTransformer`` from ``defaults`` updated by ``overrides``, with its probe points.

    ``probe_layers`` is ``["patch_embed", "blocks.0", ..., "blocks.<depth-1>", "norm"]``: the
    ``stem`` (patch tokens, before the class token), every ``block`` (extras ``attn`` and
    ``mlp``, its two residual branches) and the final ``norm``, all token sequences
    (B, N, embed_dim). (Not described: with ``dynamic_img_size=True`` timm's ``patch_embed``
    outputs a (B, h, w, embed_dim) grid instead.)

    ``score`` (``"dot"``, ``"shared_metric"``, ``"two_projection"``), ``tau`` and ``learn_tau``
    replace every block's attention by metric-attention (``use_metric_attention``).

    Raises:
        TypeError: an override is not a ``VisionTransformer`` option.
    """
    attention = pop_attention_options(model_name, VisionTransformer, overrides)
    options = {**defaults, **overrides}
    options["patch_size"] = resolve_patch_size(img_size, options.get("patch_size"))
    model = VisionTransformer(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **options)
    if attention.get("score", "dot") != "dot" or attention.get("tau") is not None or attention.get("learn_tau"):
        use_metric_attention(model, **({"score": "dot"} | attention))
    width = model.embed_dim
    attach_feature_info(model, [
        ProbePoint("patch_embed", "stem", width, tokens=True),
        *(
            ProbePoint(f"blocks.{i}", "block", width, tokens=True,
                       extras={"attn": f"blocks.{i}.attn", "mlp": f"blocks.{i}.mlp"})
            for i in range(len(model.blocks))
        ),
        ProbePoint("norm", "norm", width, tokens=True),
    ])
    return model


@register_model
def vit_tiny(num_classes: int, in_chans: int, img_size: int, **overrides: Any) -> VisionTransformer:
    """ViT, 6 blocks, width 192, 3 heads; ``overrides`` are ``VisionTransformer`` options."""
    defaults = {"embed_dim": 192, "depth": 6, "num_heads": 3}
    return build_vit("vit_tiny", num_classes, in_chans, img_size, defaults, overrides)


@register_model
def vit_small(num_classes: int, in_chans: int, img_size: int, **overrides: Any) -> VisionTransformer:
    """ViT, 6 blocks, width 384, 6 heads; ``overrides`` are ``VisionTransformer`` options."""
    defaults = {"embed_dim": 384, "depth": 6, "num_heads": 6}
    return build_vit("vit_small", num_classes, in_chans, img_size, defaults, overrides)


@register_model
def vit_mini(num_classes: int, in_chans: int, img_size: int, **overrides: Any) -> VisionTransformer:
    """ViT, 4 blocks, width 96, 3 heads (about 0.45 M parameters): for CPU-sized experiments."""
    defaults = {"embed_dim": 96, "depth": 4, "num_heads": 3}
    return build_vit("vit_mini", num_classes, in_chans, img_size, defaults, overrides)
