"""Which layers to capture: names or glob patterns over ``model.named_modules()``."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from torch import nn

from attnconv_pl.errors import ConfigError


def _compact_listing(names: list[str]) -> str:
    """Names grouped by their pattern with numeric parts as ``*`` (a glob that selects them)."""
    groups: dict[str, list[str]] = {}
    for name in names:
        pattern = ".".join("*" if part.isdigit() else part for part in name.split("."))
        groups.setdefault(pattern, []).append(name)
    return ", ".join(
        members[0] if len(members) == 1 else f"{pattern} (x{len(members)})"
        for pattern, members in groups.items()
    )


def resolve_layers(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """Names of the layers that ``patterns`` select in ``model.named_modules()``.

    Each pattern is an exact name or an ``fnmatch`` glob (case-sensitive, ``*`` also crosses
    dots: ``blocks.*`` selects ``blocks.0`` and ``blocks.0.attn``). The result lists the matches
    of the first pattern in module order, then those of the second, and so on, each name once.
    The model itself (the empty name) is never selected.

    Raises:
        ConfigError: a pattern matches no layer; the message lists the available names.
    """
    names = [name for name, _ in model.named_modules() if name]
    selected: dict[str, None] = {}
    for pattern in patterns:
        matches = [name for name in names if name == pattern or fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise ConfigError(
                f"no layer matches {pattern!r}; layers are: {_compact_listing(names)}. "
                "Give exact names or glob patterns over model.named_modules()."
            )
        selected.update(dict.fromkeys(matches))
    return list(selected)
