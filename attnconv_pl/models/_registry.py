"""Build image classifiers by name, in the style of timm's model registry.

A model factory is a function ``fn(num_classes, in_chans, img_size, **kwargs) -> nn.Module``
decorated with :func:`register_model`; the function's name is the model's name. Every model a
factory returns carries ``feature_info``, its probe points in forward order (a list of
:class:`~attnconv_pl.models._features.ProbePoint`), and ``probe_layers``, their module names,
both set by ``attach_feature_info``. :func:`create_model` checks the description.

A name with a colon is not registered: ``timm:NAME`` (any timm model, without weights) or an
import path ``package.module:Name`` (your own model); :mod:`.external` builds those.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import nn

from attnconv_pl.errors import ConfigError

from ._features import KINDS, ProbePoint, probe_layers
from ._options import UnknownOptionError
from .external import create_external_model, is_external

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
        name: a name from :func:`list_models`, ``timm:NAME`` or ``package.module:Name`` (see
            :mod:`.external`).
        num_classes: width of the output logits, shape (batch, num_classes).
        in_chans: input channels (1 for grey-scale digits, 3 for RGB).
        img_size: input height and width in pixels.
        **kwargs: model-specific options (see the factory's docstring).

    Returns:
        The model, with ``model.feature_info`` (its probe points in forward order) and
        ``model.probe_layers`` (their module names); a timm or imported model has them when it
        describes its features.

    Raises:
        ConfigError: ``name`` is not registered (the message lists the known names), or a
            timm or imported model cannot be built (see :func:`.external.create_external_model`).
        UnknownOptionError: a keyword in ``kwargs`` is not an option of this model (a
            ConfigError and a TypeError; it names the closest options).
        TypeError, ValueError: the factory's model describes its probe points wrongly (a bug
            in the factory; see ``_check_feature_info``).
    """
    if is_external(name):
        model = create_external_model(name, num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)
        if hasattr(model, "feature_info") and hasattr(model, "probe_layers"):
            _check_feature_info(name, model)
        return model
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
    _check_feature_info(name, model)
    return model


def reject_unknown_kwargs(model_name: str, kwargs: Mapping[str, Any], accepted: Iterable[str]) -> None:
    """Raise :class:`UnknownOptionError` (a ConfigError and a TypeError) naming ``model_name``,
    the closest options and all of them when ``kwargs`` has a key outside ``accepted``.

    Factories that forward ``**kwargs`` to a library class call this with that class's options.
    """
    accepted = set(accepted)
    unknown = set(kwargs) - accepted
    if unknown:
        raise UnknownOptionError(model_name, unknown, kwargs, accepted)


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
    return (f"unknown model '{name}'.{hint} Known models are: {', '.join(known)}; or give any timm model as "
            "timm:NAME, or your own as an import path package.module:Name.")


def _check_feature_info(name: str, model: nn.Module) -> None:
    """Check the model's description of its probe points (see :mod:`._features`).

    Raises:
        TypeError: ``feature_info`` is missing, empty or holds something else than ProbePoints.
        ValueError: an entry names a module or an extras target that the model does not have,
            or a kind outside KINDS, or ``probe_layers`` is not the list derived from it.
    """
    feature_info = getattr(model, "feature_info", None)
    if not isinstance(feature_info, list) or not feature_info:
        raise TypeError(
            f"the factory of model '{name}' returned a model without a non-empty list "
            "`feature_info`; set it with attach_feature_info(model, [ProbePoint(...), ...])"
        )
    not_points = [entry for entry in feature_info if not isinstance(entry, ProbePoint)]
    if not_points:
        raise TypeError(
            f"model '{name}' has feature_info entries {not_points} that are not ProbePoints; "
            "describe each probe point as ProbePoint(module=..., kind=..., num_chs=...)"
        )
    module_names = {module_name for module_name, _ in model.named_modules()}
    missing = [point.module for point in feature_info if point.module not in module_names]
    if missing:
        raise ValueError(
            f"model '{name}' lists probe points {missing} that are not modules of the model; "
            "ProbePoint.module must be a name from model.named_modules()"
        )
    unknown_kinds = [f"{point.module}: {point.kind!r}" for point in feature_info if point.kind not in KINDS]
    if unknown_kinds:
        raise ValueError(
            f"model '{name}' has probe points of unknown kind ({', '.join(unknown_kinds)}); "
            f"kinds are: {', '.join(KINDS)}"
        )
    bad_extras = [
        f"{point.module}: {key}={target!r}"
        for point in feature_info
        for key, target in point.extras.items()
        if target not in module_names
    ]
    if bad_extras:
        raise ValueError(
            f"model '{name}' has probe point extras that are not modules of the model "
            f"({', '.join(bad_extras)}); extras values must be names from model.named_modules()"
        )
    derived = probe_layers(feature_info)
    if getattr(model, "probe_layers", None) != derived:
        raise ValueError(
            f"model '{name}' has probe_layers {getattr(model, 'probe_layers', None)} but its "
            f"feature_info lists {derived}; set both with attach_feature_info"
        )
