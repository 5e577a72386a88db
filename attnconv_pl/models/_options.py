"""Options (``arch_kwargs``) that a model does not take: one error naming them, the closest names,
and the options that remain once they are dropped."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional

from attnconv_pl.errors import ConfigError

_UNEXPECTED_KEYWORD = re.compile(r"unexpected keyword argument '(\w+)'")


class UnknownOptionError(ConfigError, TypeError):
    """Options that a model does not take: bad input (a :class:`ConfigError`) and a call with
    unexpected keywords (a ``TypeError``).

    Attributes:
        model: the model's name (``attention_net``, ``timm:resnet18``, ``package.module:Name``).
        unknown: the options it does not take, sorted.
        given: every option given, as given.
        accepted: its options, sorted, when they are known (None for a timm model).
    """

    def __init__(self, model: str, unknown: Iterable[str], given: Mapping[str, Any],
                 accepted: Optional[Iterable[str]] = None) -> None:
        self.model = model
        self.unknown = sorted(unknown)
        self.given = dict(given)
        self.accepted = None if accepted is None else sorted(set(accepted))
        super().__init__(self._message())

    @property
    def kept(self) -> dict[str, Any]:
        """The options given, without the unknown ones."""
        return {key: value for key, value in self.given.items() if key not in self.unknown}

    def _message(self) -> str:
        named = []
        for key in self.unknown:
            close = difflib.get_close_matches(key, self.accepted or [], n=1, cutoff=0.7)
            named.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        options = (f"its options are: {', '.join(self.accepted)}" if self.accepted is not None
                   else "its model class takes no such keyword")
        return (f"model '{self.model}' got unknown option(s) {', '.join(named)}; {options}. "
                "Fix the spelling or remove the option.")


def unexpected_options(build: Callable[[dict[str, Any]], Any], options: Mapping[str, Any],
                       error: TypeError) -> list[str]:
    """The options that ``build(options)`` rejects as unexpected keywords: each one a ``TypeError``
    names (``error`` the first) is dropped and ``build`` called again, until it takes the rest or
    fails otherwise (at most one call per option). [] when ``error`` names none of ``options``."""
    remaining, unknown = dict(options), []
    while error is not None:
        match = _UNEXPECTED_KEYWORD.search(str(error))
        if match is None or match.group(1) not in remaining:
            break
        unknown.append(match.group(1))
        del remaining[match.group(1)]
        try:
            build(remaining)
            error = None
        except TypeError as next_error:
            error = next_error
        except Exception:  # noqa: BLE001 - another problem, reported once these options are dropped
            break
    return unknown
