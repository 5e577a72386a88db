"""Build image classifiers by name, in the style of timm's model registry.

A model factory is a function ``fn(num_classes, in_chans, img_size, **kwargs) -> nn.Module``
decorated with :func:`register_model`; the function's name is the model's name. Every model a
factory returns carries ``probe_layers``: the ordered names (from ``model.named_modules()``) of
the layers worth probing, in forward order. :func:`create_model` checks that they exist.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import nn

from attnconv_pl.errors import ConfigError

ModelFactory = Callable[..., nn.Module]

_MODEL_FACTORIES: dict[str, ModelFactory] = {}


def register_model(factory: ModelFactory) -> ModelFactory:
    """Register ``factory`` under its function name and return it unchanged (a decorator).

    Raises:
        ValueError: another factory is already registered under the same name.
    """
    name = factory.__name__
    registered = _MODEL_FACTORIES.get(name)
    if registered is not None and registered is not factory:
        raise ValueError(
            f"a model named '{name}' is already registered (by {registered.__module__}); "
            "give the new factory function a different name"
        )
    _MODEL_FACTORIES[name] = factory
    return factory


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models that match an fnmatch ``pattern`` (e.g. ``"*vit*"``)."""
    return sorted(fnmatch.filter(_MODEL_FACTORIES, pattern))


def create_model(
    name: str, num_classes: int = 10, in_chans: int = 3, img_size: int = 32, **kwargs: Any
) -> nn.Module:
    """Build the registered model ``name`` for images of ``in_chans`` x ``img_size`` x ``img_size``.

    Args:
        name: a name from :func:`list_models`.
        num_classes: width of the output logits, shape (batch, num_classes).
        in_chans: input channels (1 for grey-scale digits, 3 for RGB).
        img_size: input height and width in pixels.
        **kwargs: model-specific options (see the factory's docstring).

    Returns:
        The model, with ``model.probe_layers`` (list of module names in forward order).

    Raises:
        ConfigError: ``name`` is not registered (the message lists the known names).
        TypeError: a keyword in ``kwargs`` is not an option of this model.
    """
    factory = _MODEL_FACTORIES.get(name)
    if factory is None:
        raise ConfigError(_unknown_model_message(name))
    signature = inspect.signature(factory)
    takes_any_keyword = any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in signature.parameters.values()
    )
    if not takes_any_keyword:
        reject_unknown_kwargs(name, kwargs, _model_options(signature))
    model = factory(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)
    _check_probe_layers(name, model)
    return model


def reject_unknown_kwargs(model_name: str, kwargs: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """Raise a TypeError naming ``model_name`` when ``kwargs`` has a key outside ``accepted``.

    Factories that forward ``**kwargs`` to a library class call this with that class's options.
    """
    accepted = sorted(set(accepted))
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"model '{model_name}' got unknown option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(accepted)}. Fix the spelling or remove the option."
        )


def _model_options(signature: inspect.Signature) -> list[str]:
    """Keyword options of a factory besides the three every factory takes."""
    common = {"num_classes", "in_chans", "img_size"}
    return [
        name
        for name, parameter in signature.parameters.items()
        if name not in common
        and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def _unknown_model_message(name: str) -> str:
    known = list_models()
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
    return f"unknown model '{name}'.{hint} Known models are: {', '.join(known)}."


def _check_probe_layers(name: str, model: nn.Module) -> None:
    probe_layers = getattr(model, "probe_layers", None)
    if not isinstance(probe_layers, list) or not probe_layers:
        raise TypeError(
            f"the factory of model '{name}' returned a model without a non-empty list "
            "`probe_layers`; set model.probe_layers to the names of the layers worth probing"
        )
    module_names = {module_name for module_name, _ in model.named_modules()}
    missing = [layer for layer in probe_layers if layer not in module_names]
    if missing:
        raise ValueError(
            f"model '{name}' lists probe layers {missing} that are not modules of the model; "
            "probe_layers must be names from model.named_modules()"
        )
