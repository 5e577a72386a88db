"""Callbacks whose options are the fields of an analysis's settings dataclass.

LightningCLI builds a callback's config section (``dynamics:``) and its ``--dynamics.KEY`` flags
from the signature and docstring of the callback's ``__init__``. :func:`options_from` gives a
callback taking ``enabled`` plus ``**settings`` the signature and the ``Args:`` docs of the
dataclass's fields, so their names, types, defaults and help are written once, in the dataclass.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Optional, TypeVar

from attnconv_pl.analyses.base import settings_help

C = TypeVar("C", bound=type)

def options_from(settings_type: type, enabled: Optional[bool] = True) -> Callable[[C], C]:
    """Class decorator: ``cls.__init__(self, enabled=<enabled>, **settings)`` gets the signature
    ``(self, enabled: bool = <enabled>, *, <every field of settings_type>)`` (no ``enabled`` when
    ``enabled`` is None: ``cls.__init__(self, **settings)``) and the class docstring gets the
    fields' ``Args:`` lines (the class docstring must end with its own ``Args:``). Every field of
    ``settings_type`` must have a plain default (no ``default_factory``)."""
    switch = [] if enabled is None else [
        inspect.Parameter("enabled", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=enabled, annotation=bool)]

    def decorate(cls: C) -> C:
        types = typing.get_type_hints(settings_type)  # the annotations as types, not strings
        fields = [inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=field.default,
                                    annotation=types[field.name])
                  for field in dataclasses.fields(settings_type)]
        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        cls.__init__.__signature__ = inspect.Signature([self_parameter, *switch, *fields])
        described = "".join(f"    {name}: {text}\n" for name, text in settings_help(settings_type).items())
        cls.__doc__ = f"{inspect.cleandoc(cls.__doc__ or '')}\n{described}"
        return cls

    return decorate
