"""Models that are not registered here: any timm model by name, or your own class by import path.

``create_model`` hands over every name holding a colon:

- ``timm:NAME`` builds ``timm.create_model(NAME, pretrained=False, ...)``: never any download.
  The option ``checkpoint_path: FILE`` loads the weights of a local file (``.pth``/``.pt`` read
  with ``torch.load(weights_only=True)``, or ``.safetensors``) through timm's own loader. Its
  probe points come from timm's ``model.feature_info`` (:func:`timm_probe_points`).
- ``package.module:Name`` imports ``package.module`` (installed, or on ``PYTHONPATH``) and calls
  ``Name(**options)``: a ``nn.Module`` class or a function returning one. ``num_classes``,
  ``in_chans`` and ``img_size`` (or ``image_size``) are passed where its signature names them.
  Its probe points are its own: ``feature_info`` (a list of :class:`ProbePoint`, or timm-style
  entries ``{"module", "num_chs", "reduction"}``) and/or ``probe_layers`` (module names). A
  model with neither can be probed only at layers named explicitly (``--dynamics.layers``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnconv_pl.errors import ConfigError

from ._features import ProbePoint, attach_feature_info
from ._options import UnknownOptionError, unexpected_options

TIMM_PREFIX = "timm:"


def is_external(name: str) -> bool:
    """Whether a model name is a ``timm:NAME`` or an import path ``module:Name`` (it has a colon)."""
    return ":" in name


def is_import_path(name: str) -> bool:
    """Whether a model name is an import path ``module:Name`` (code to import), not ``timm:NAME``."""
    return is_external(name) and not name.startswith(TIMM_PREFIX)


def create_external_model(name: str, num_classes: int, in_chans: int, img_size: int, **kwargs: Any) -> nn.Module:
    """Build ``timm:NAME`` or ``module:Name`` for images of ``in_chans`` x ``img_size`` x ``img_size``.

    Returns:
        The model; ``model.feature_info`` (ProbePoints) and ``model.probe_layers`` are set when
        the model describes its features (always for timm models that have ``feature_info``).

    Raises:
        UnknownOptionError: an option the model does not take (a ConfigError naming every such
            option).
        ConfigError: the name cannot be resolved, the options do not fit the model, or the model
            does not run on such images; the message says what to do.
    """
    if name.startswith(TIMM_PREFIX):
        model = _create_timm_model(name.removeprefix(TIMM_PREFIX), num_classes, in_chans, img_size, kwargs)
        points = timm_probe_points(model, in_chans, img_size)
    else:
        model = _create_imported_model(name, num_classes, in_chans, img_size, kwargs)
        points = own_probe_points(name, model, in_chans, img_size)
    if points is not None:
        attach_feature_info(model, points)
    return model


def _create_timm_model(name: str, num_classes: int, in_chans: int, img_size: int,
                       options: dict[str, Any]) -> nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=, in_chans=, img_size=, **options)``
    (``img_size`` only for models that take it, e.g. ViTs; convolutional ones run at any size)."""
    import timm

    spec = f"{TIMM_PREFIX}{name}"
    if ":" in name or not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise ConfigError(f"model {spec!r}: timm has no model {name!r} (hub names are not accepted: no weights are "
                          f"ever downloaded).{hint} List timm's models with python -c \"import timm; "
                          "print(timm.list_models('*vit*'))\"")
    refused = sorted({"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"} & set(options))
    if refused:
        raise ConfigError(f"model {spec!r}: option(s) {', '.join(refused)} are not accepted (no weights are ever "
                          "downloaded); load a local file with the option checkpoint_path: FILE")
    checkpoint_path = options.get("checkpoint_path")
    if checkpoint_path is not None and not Path(checkpoint_path).expanduser().is_file():
        raise ConfigError(f"model {spec!r}: checkpoint_path {checkpoint_path} is not a file; give the path of a "
                          "local .pth, .pt or .safetensors file holding the model's weights")
    shape = {"num_classes": num_classes, "in_chans": in_chans}

    def build(options: dict[str, Any]) -> nn.Module:
        try:
            return timm.create_model(name, pretrained=False, **shape, img_size=img_size, **options)
        except TypeError as error:
            if "img_size" not in str(error):
                raise
            return timm.create_model(name, pretrained=False, **shape, **options)

    try:
        return build(options)
    except TypeError as error:
        unknown = unexpected_options(build, options, error)
        if unknown:
            raise UnknownOptionError(spec, unknown, options) from error
        raise _unbuildable(spec, options, in_chans, img_size, num_classes, error) from error
    except (ValueError, RuntimeError, KeyError) as error:
        raise _unbuildable(spec, options, in_chans, img_size, num_classes, error) from error


def _unbuildable(spec: str, options: dict[str, Any], in_chans: int, img_size: int, num_classes: int,
                 error: Exception) -> ConfigError:
    return ConfigError(f"model {spec!r} cannot be built with options {options or '{}'} for {in_chans}x{img_size}x"
                       f"{img_size} images and {num_classes} classes: {_one_line(error)}. Check its options "
                       "(timm's model class) and, with checkpoint_path, that the file holds this model's weights")


def _create_imported_model(name: str, num_classes: int, in_chans: int, img_size: int,
                           options: dict[str, Any]) -> nn.Module:
    """Import ``module:Name`` and call it with ``options`` and the shape arguments it names."""
    factory = import_object(name)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        parameters = {}
    given = {"num_classes": num_classes, "in_chans": in_chans, "img_size": img_size, "image_size": img_size}
    shape = {key: value for key, value in given.items() if key in parameters and key not in options}
    keywords = [key for key, parameter in parameters.items()
                if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    takes_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    unknown = set(options) - set(keywords)
    if parameters and unknown and not takes_any:
        raise UnknownOptionError(name, unknown, options, [key for key in keywords if key not in given])
    try:
        model = factory(**shape, **options)
    except TypeError as error:
        unknown = unexpected_options(lambda kept: factory(**shape, **kept), options, error)
        if unknown:
            raise UnknownOptionError(name, unknown, options) from error
        raise ConfigError(f"model {name!r} cannot be called with {sorted({**shape, **options})}: {_one_line(error)}. "
                          "Fix arch_kwargs to match its signature") from error
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module; name a "
                          "nn.Module class or a function that returns one")
    return model


def import_object(spec: str) -> Callable[..., Any]:
    """The object ``Name`` of module ``package.module`` for ``"package.module:Name"`` (``Name`` may be
    dotted: ``module:Outer.Inner``).

    Raises:
        ConfigError: the spec is malformed, the module is not importable or fails on import, or
            it has no such attribute.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ConfigError(f"model {spec!r}: an import path is package.module:Name (e.g. my_pkg.nets:MyNet), "
                          "or timm:NAME for a timm model")
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(f"model {spec!r}: no module {module_name!r} can be imported; install its package "
                          "(pip install -e .) or add its folder to PYTHONPATH")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - whatever the user's module raises on import
        raise ConfigError(f"model {spec!r}: importing {module_name} failed: {type(error).__name__}: "
                          f"{_one_line(error)}") from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            public = sorted(key for key, value in vars(target).items()
                            if not key.startswith("_") and callable(value)) if inspect.ismodule(target) else []
            close = difflib.get_close_matches(part, public, n=3)
            listing = (f"; did you mean {' or '.join(close)}?" if close
                       else f"; it has: {', '.join(public[:12])}" if public else "")
            raise ConfigError(f"model {spec!r}: {module_name} has no attribute {attribute!r}{listing}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"model {spec!r} is a {type(target).__name__}, not a class or function building a model")
    return target


def timm_probe_points(model: nn.Module, in_chans: int, img_size: int) -> list[ProbePoint] | None:
    """A timm model's probe points: the entries of its ``feature_info`` (stage or block outputs in
    depth order) and its classifier (``pretrained_cfg["classifier"]``), or None without
    ``feature_info``.

    Kinds: an entry whose name (digits aside) no other entry shares and that comes first is the
    ``stem`` (ResNet's ``act1``), the others are ``block`` (a stage's output is its last residual
    block's); the classifier is the ``head``. Widths, and whether an output is a token sequence,
    are measured by one forward pass of two blank images (:func:`output_shapes`).
    """
    entries = timm_feature_entries(getattr(model, "feature_info", None))
    if not entries:
        return None
    modules = dict(model.named_modules())
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    kinds = _timm_kinds([entry["module"] for entry in entries])
    if isinstance(classifier, str) and classifier in modules and getattr(model, "num_classes", 0):
        kinds[classifier] = "head"
    shapes = output_shapes(model, list(kinds), in_chans, img_size)
    return [points_of_shape(module, kind, shapes[module], img_size) for module, kind in kinds.items()]


def timm_feature_entries(feature_info: Any) -> list[dict[str, Any]]:
    """timm's ``feature_info`` (a ``FeatureInfo`` or a list of dicts) as a list of dicts with a
    ``module`` ([] for anything else)."""
    entries = getattr(feature_info, "info", feature_info)
    if not isinstance(entries, Sequence):
        return []
    return [dict(entry) for entry in entries if isinstance(entry, Mapping) and "module" in entry]


def _timm_kinds(names: list[str]) -> dict[str, str]:
    """``{module: kind}`` for timm's feature entries (see :func:`timm_probe_points`)."""
    patterns = Counter(re.sub(r"\d+", "#", name) for name in names)
    first_alone = len(names) > 1 and patterns[re.sub(r"\d+", "#", names[0])] == 1
    return {name: "stem" if index == 0 and first_alone else "block" for index, name in enumerate(names)}


def own_probe_points(name: str, model: nn.Module, in_chans: int, img_size: int) -> list[ProbePoint] | None:
    """The probe points an imported model declares: its ``feature_info`` ProbePoints as they are,
    timm-style entries converted (kinds as for timm models), else its ``probe_layers`` as points of
    kind ``block``; None when it declares neither.

    Raises:
        ConfigError: ``probe_layers`` or ``feature_info`` names a module the model does not have.
    """
    feature_info = getattr(model, "feature_info", None)
    if isinstance(feature_info, list) and feature_info and all(isinstance(p, ProbePoint) for p in feature_info):
        points = list(feature_info)
        _check_modules(name, model, [point.module for point in points], "feature_info")
        return points
    entries = timm_feature_entries(feature_info)
    if entries:
        kinds = _timm_kinds([entry["module"] for entry in entries])
    elif getattr(model, "probe_layers", None):
        kinds = dict.fromkeys(model.probe_layers, "block")
    else:
        return None
    _check_modules(name, model, list(kinds), "feature_info" if entries else "probe_layers")
    shapes = output_shapes(model, list(kinds), in_chans, img_size)
    return [points_of_shape(module, kind, shapes[module], img_size) for module, kind in kinds.items()]


def _check_modules(name: str, model: nn.Module, modules: list[str], attribute: str) -> None:
    known = {module for module, _ in model.named_modules() if module}
    missing = [module for module in modules if module not in known]
    if missing:
        raise ConfigError(f"model {name!r}: its {attribute} names {missing}, which are not modules of the model; "
                          f"use names from model.named_modules() (e.g. {', '.join(sorted(known)[:8])})")


def output_shapes(model: nn.Module, modules: list[str], in_chans: int, img_size: int) -> dict[str, tuple[int, ...]]:
    """The output shape of each of ``modules`` for a batch of two blank images (2, in_chans,
    img_size, img_size), in eval mode without gradients (the model's mode is restored).

    Raises:
        ConfigError: the model does not run on such images, or a module's output is not a tensor.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(module, args, output):
            shapes.setdefault(name, tuple(output.shape) if isinstance(output, torch.Tensor) else ())
        return hook

    handles = [model.get_submodule(name).register_forward_hook(record(name)) for name in modules]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, in_chans, img_size, img_size))
    except Exception as error:  # noqa: BLE001 - any failure of the user's forward pass
        raise ConfigError(f"the model does not run on {in_chans}x{img_size}x{img_size} images "
                          f"({type(error).__name__}: {_one_line(error)}); use data of the size it takes, or "
                          "model options for this size (e.g. img_size, patch_size)") from error
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    not_tensors = [name for name in modules if len(shapes.get(name, ())) < 2]
    if not_tensors:
        raise ConfigError(f"probe point(s) {not_tensors} give no (batch, ...) tensor output (or never ran in "
                          "forward); probe modules whose output is a tensor")
    return shapes


def points_of_shape(module: str, kind: str, shape: tuple[int, ...], img_size: int) -> ProbePoint:
    """A probe point whose output has ``shape``: (B, C, H, W) a grid (width C, reduction
    img_size / H), (B, N, D) a token sequence (width D), (B, D) a vector."""
    if len(shape) == 4 and shape[2] > 1:
        return ProbePoint(module, kind, num_chs=shape[1], reduction=max(1, img_size // shape[2]))
    if len(shape) == 3:
        return ProbePoint(module, kind, num_chs=shape[2], tokens=True)
    return ProbePoint(module, kind, num_chs=shape[1])


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text[:300] + "...") if len(text) > 300 else text or type(error).__name__
