"""Checks of the heads' settings: a bad value is a :class:`~attnconv_pl.errors.ConfigError` (a
``ValueError``) whose one line names the setting, what it must be and what was given."""

from __future__ import annotations

import math
import numbers
from typing import Any

from attnconv_pl.errors import ConfigError


def check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False, meaning: str = "") -> float:
    """``value`` as a float when it is a finite real number >= ``minimum`` (> with ``strict``).

    Args:
        name: the setting as the user writes it (``beta``, ``--model.init_args.lr``).
        meaning: what the setting is, for the message.
    """
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        raise ConfigError(f"{name} must be a finite number {bound}{f' ({meaning})' if meaning else ''}, "
                          f"got {value!r}")
    return number


def check_count(name: str, value: Any, *, minimum: int = 1, meaning: str = "") -> int:
    """``value`` when it is an integer >= ``minimum`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}{f' ({meaning})' if meaning else ''}, "
                          f"got {value!r}")
    return int(value)
