"""The patch size shared by the patch-based models (attention/conv pair and ViTs)."""

from __future__ import annotations

TOKENS_PER_SIDE = 8
"""Default grid: ``img_size // patch_size = 8`` tokens per side (64 tokens) at any image size."""


def resolve_patch_size(img_size: int, patch_size: int | None) -> int:
    """Return ``patch_size``, or when it is None the size giving an 8 x 8 token grid.

    The default is ``max(1, img_size // 8)``: 4 px for 32 px CIFAR images, 2 px for 16 px digits.

    Raises:
        ValueError: the patch is not a positive size that fits in the image.
    """
    if patch_size is None:
        return max(1, img_size // TOKENS_PER_SIDE)
    if not 1 <= patch_size <= img_size:
        raise ValueError(
            f"patch_size must be between 1 and img_size={img_size} px, got {patch_size}; "
            "pass a smaller patch_size or leave it unset (None) for an 8 x 8 token grid"
        )
    return patch_size
