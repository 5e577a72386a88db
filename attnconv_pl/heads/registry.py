"""Heads by name, in the style of the model registry: ``create_head("linear_attention", dim,
num_classes, tokens, heads=8)``, ``list_heads("*attention*")``.

A head factory is ``fn(dim, num_classes, tokens, **options) -> nn.Module`` decorated with
:func:`register_head`; the function's name is the head's name. A head maps tokens (B, s, d) to
logits (B, c). Convex-capable heads (:class:`ConvexHead`) also give their lifted form.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from attnconv_pl.errors import ConfigError

from .lifted import Lifting

HeadFactory = Callable[..., nn.Module]

_HEAD_FACTORIES: dict[str, HeadFactory] = {}
COMMON = ("dim", "num_classes", "tokens")
"""The arguments every head factory takes: token width d, classes c, tokens per input s."""


@runtime_checkable
class ConvexHead(Protocol):
    """A head with an equivalent convex program (see :mod:`attnconv_pl.heads.lifted`).

    Attributes:
        max_rank: min(p, q), the largest rank a block Z_b can have: with that many units per
            block the head reaches the optimum of its convex program.
    """

    max_rank: int

    def lifting(self, tokens: Tensor) -> Lifting:
        """The lifted data of ``tokens`` (n, s, d) for this head's gates."""

    def factors(self) -> tuple[Tensor, Tensor]:
        """The units as factors ``left`` (P, m, p) and ``right`` (P, m, q) of the blocks
        Z_b = sum_j left_bj right_bj^H (:func:`~attnconv_pl.heads.lifted.lifted_blocks`); the
        head's weight decay is (1/2) sum (|left|^2 + |right|^2)."""


def register_head(factory: HeadFactory) -> HeadFactory:
    """Register ``factory`` under its function name and return it unchanged (a decorator).

    Raises:
        ValueError: another factory is already registered under the same name.
    """
    registered = _HEAD_FACTORIES.get(factory.__name__)
    if registered is not None and registered is not factory:
        raise ValueError(f"a head named '{factory.__name__}' is already registered (by {registered.__module__}); "
                         "give the new factory function a different name")
    _HEAD_FACTORIES[factory.__name__] = factory
    return factory


def list_heads(pattern: str = "*") -> list[str]:
    """Sorted names of the registered heads that match an fnmatch ``pattern``."""
    return sorted(fnmatch.filter(_HEAD_FACTORIES, pattern))


def head_options(name: str) -> list[str]:
    """The options of head ``name`` besides :data:`COMMON`."""
    return [option for option in inspect.signature(_factory(name)).parameters if option not in COMMON]


def create_head(name: str, dim: int, num_classes: int, tokens: int, **options: Any) -> nn.Module:
    """Build head ``name`` for inputs of ``tokens`` tokens of width ``dim`` and ``num_classes``
    classes; ``options`` are the head's own (see its factory's docstring).

    Raises:
        ConfigError: unknown name (the message lists the known ones), an option the head does
            not take (the message lists its options) or out of range.
    """
    factory = _factory(name)
    unknown = sorted(set(options) - set(head_options(name)))
    if unknown:
        raise ConfigError(f"head '{name}' got unknown option(s) {', '.join(map(repr, unknown))}; "
                        f"its options are: {', '.join(head_options(name)) or 'none'}")
    return factory(dim=dim, num_classes=num_classes, tokens=tokens, **options)


def _factory(name: str) -> HeadFactory:
    factory = _HEAD_FACTORIES.get(name)
    if factory is None:
        close = difflib.get_close_matches(name, list_heads(), n=3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown head '{name}'.{hint} Known heads are: {', '.join(list_heads())}.")
    return factory
