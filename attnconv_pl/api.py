"""Probe any network from Python, and read a run's tables: the notebook API.

    import attnconv_pl as ac
    rows = ac.probe_model(model, images, labels, layers=["blocks.*"])        # the analyses' numbers
    rows = ac.probe_model(timm_model, images, labels)                         # at its feature_info, as train.py
    frame = pandas.DataFrame(rows)                                           # analysis,layer,metric,value
    dynamics = ac.load_dynamics("runs/default/RUN")                          # dynamics.csv as a DataFrame
    metrics = ac.load_metrics("runs/default/RUN")                            # metrics.csv as a DataFrame

:func:`probe_model` runs the analyses exactly as ``probe.py`` runs them on one checkpoint
(:meth:`~attnconv_pl.analyses.base.Analysis.probe_checkpoint`): the same capture, settings and
maths, so its numbers are those ``probe.py`` and the training callbacks compute for a network with
those weights on that probe set. :func:`load_dynamics` and :func:`load_metrics` need pandas
(``pip install "attnconv-pl[pandas]"``).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

import torch
from torch import Tensor, nn

from attnconv_pl.analyses import Analysis, list_analyses, load_analysis
from attnconv_pl.analyses.base import LabelledInputs
from attnconv_pl.analyses.session import ProbingSession, probing_settings_of, settings_for
from attnconv_pl.capture import resolve_layers
from attnconv_pl.capture.probe_set import select_probe_indices
from attnconv_pl.errors import ConfigError
from attnconv_pl.io.epoch_table import DYNAMICS_FILE
from attnconv_pl.models import ProbePoint, probe_layers
from attnconv_pl.models.external import timm_feature_entries
from attnconv_pl.offline.data_choice import forward_context

if TYPE_CHECKING:
    import pandas

METRICS_FILE = "metrics.csv"
TENSOR_DATASET = "tensors"
"""The dataset name of a probe set given as tensors."""


class ProbeRow(NamedTuple):
    """One number of :func:`probe_model`: ``metric`` of ``layer`` (``""`` for a number of the whole
    network) computed by ``analysis``; the rows of ``dynamics.csv`` without the epoch."""

    analysis: str
    layer: str
    metric: str
    value: float


def probe_model(model: nn.Module, inputs: Tensor, labels: Tensor, *, layers: Optional[Sequence[str]] = None,
                analyses: Sequence[str] = ("dynamics",), settings: Optional[Mapping[str, Mapping[str, Any]]] = None,
                device: str | torch.device = "cpu", epoch: int = 0) -> list[ProbeRow]:
    """Run ``analyses`` on ``model`` with the probe set ``inputs``, as ``probe.py`` does on a checkpoint.

    One :class:`~attnconv_pl.analyses.session.ProbingSession` builds and runs the analyses, as in
    ``probe.py`` and during training. The probe set is ``settings["probing"]["probe_size"]``
    inputs (default 1000; all of them when fewer) drawn by its ``seed`` (default 0), as training
    draws it from a split (``settings["dynamics"]`` may still name them, as before). The model
    runs in eval mode on ``device`` in float32, or under ``probing.precision`` autocast (its mode is
    restored afterwards). Drift needs
    earlier epochs, so one call gives no ``drift_*`` numbers.

    Args:
        model: any network taking ``inputs`` (N, ...) in batches and returning logits (B, classes).
        inputs: the probe inputs (N, ...), preprocessed as the model expects (e.g. normalised).
        labels: their integer classes (N,), used by analyses that read labels (``single_node``,
            ``robustness``) and for ``probe_accuracy``.
        layers: names or glob patterns over ``model.named_modules()`` for ``dynamics``; default
            the model's probe points, as ``train.py`` finds them: its ``probe_layers`` (models of
            ``attnconv_pl.models.create_model`` have them), else the modules of its ``feature_info``
            (timm's: the block or stage outputs, then the classifier). Selected modules that never
            run in a forward pass (a glob such as ``blocks.*`` also selects, e.g., dropouts that
            timm's fused attention skips) are left out with one warning naming them.
        analyses: names among ``dynamics``, ``single_node``, ``stiffness``, ``robustness`` and ``similarity`` (the
            analyses whose numbers are rows of ``dynamics.csv``; ``robustness`` gives run-level rows
            ``noise_accuracy_<sigma>``, one per noise level).
        settings: ``probing``: fields of ``ProbingSettings`` (what every analysis shares: seed,
            batch size, probe size); per analysis, fields of its settings dataclass replacing the
            defaults, e.g. ``{"probing": {"probe_size": 500}, "dynamics": {"topology": False}}``.
            The dynamics run in this process unless ``num_workers`` asks for worker processes
            (they take seconds to start, and need a script with an
            ``if __name__ == "__main__":`` guard or a notebook).
        device: where the model runs.
        epoch: the epoch the numbers are labelled with (0 = at initialisation); analyses with an
            epoch schedule (``stiffness``) use it.

    Returns:
        One :class:`ProbeRow` per number, analysis by analysis in the order of ``analyses``,
        then per layer in depth order (as in ``dynamics.csv``); ``pandas.DataFrame(rows)`` makes a
        table of them.

    Raises:
        ConfigError: an unknown analysis or setting, an analysis that does not run on a network
            (``training_records`` reads a run's files), inputs and labels of different lengths,
            no layers to probe (none given or declared, or none of them runs), a layer that runs
            more than once per forward pass, or a network without what an analysis needs.
    """
    if len(inputs) != len(labels):
        raise ConfigError(f"inputs has {len(inputs)} items but labels {len(labels)}; give one label per input")
    settings = dict(settings or {})
    unknown = sorted(set(settings) - {"probing", *list_analyses()})
    if unknown:
        raise ConfigError(f"settings names no analysis {', '.join(map(repr, unknown))}; its keys are probing and "
                          f"the analyses: {', '.join(list_analyses())}")
    for name in analyses:
        _check_analysis(name)
    try:
        shared = probing_settings_of(settings)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"probing settings {dict(settings.get('probing') or {})}: {error}") from error
    own = {"num_workers": 1, **settings.get("dynamics", {})}  # in this process unless asked
    if layers is not None:
        own["layers"] = list(layers)
    settings["dynamics"] = own
    device = torch.device(device)

    def probe_set(split: str, size: int, seed: int) -> LabelledInputs:
        indices = select_probe_indices(len(inputs), size, seed)
        return LabelledInputs(inputs[indices].float().cpu(), labels[indices].cpu(), indices, TENSOR_DATASET, "given",
                              own_data=True)

    session = ProbingSession(shared, probe_set, device, autocast=forward_context(shared.precision, device))
    training = model.training
    model.to(device).eval()
    built: dict[str, Analysis] = {}
    try:
        for name in analyses:
            analysis_settings = _settings(name, settings)
            if name == "dynamics":
                analysis_settings = dataclasses.replace(analysis_settings, layers=_running_layers(
                    model, inputs[:2].float().to(device), analysis_settings.layers))
            try:
                built[name] = session.build(name, analysis_settings, model)
            except ValueError as error:
                raise ConfigError(f"analysis {name}: {error}") from error
        probed = session.run(epoch, model, built)
    finally:
        model.train(training)
        for analysis in built.values():
            if hasattr(analysis, "close"):
                analysis.close()
    return [ProbeRow(name, layer, metric, value)
            for name, result in probed.results.items() for _, layer, metric, value in result.rows()]


def _declared_layers(model: nn.Module) -> list[str]:
    """The modules of the model's probe points as ``train.py`` finds them ([] when it declares
    none): its ``probe_layers``, else its ``feature_info`` (ProbePoints, or timm's entries followed
    by a timm model's classifier, ``pretrained_cfg["classifier"]``, as for ``timm:NAME`` models)."""
    if getattr(model, "probe_layers", None):
        return list(model.probe_layers)
    feature_info = getattr(model, "feature_info", None)
    if isinstance(feature_info, list) and feature_info and all(isinstance(p, ProbePoint) for p in feature_info):
        return probe_layers(feature_info)
    modules = [entry["module"] for entry in timm_feature_entries(feature_info)]
    classifier = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if modules and isinstance(classifier, str) and getattr(model, "num_classes", 0) and \
            classifier in dict(model.named_modules()):
        modules.append(classifier)
    return modules


def _running_layers(model: nn.Module, batch: Tensor, patterns: Optional[Sequence[str]]) -> list[str]:
    """The layers ``patterns`` select (default: :func:`_declared_layers`) that run once when the
    model (in eval mode, on ``batch``'s device) runs on ``batch``; those that never run are left out
    with one warning.

    Raises:
        ConfigError: no patterns and no declared probe points, a pattern matching no layer, none of
            the layers running, or a layer running more than once (a shared module).
    """
    if not patterns:
        patterns = _declared_layers(model)
        if not patterns:
            raise ConfigError(f"{type(model).__name__} declares no probe points (probe_layers or feature_info); "
                              "name the layers to probe, e.g. layers=['blocks.*'] (names from model.named_modules())")
    names = resolve_layers(model, patterns)
    calls = dict.fromkeys(names, 0)

    def count(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            calls[name] += 1
        return hook

    handles = [model.get_submodule(name).register_forward_hook(count(name)) for name in names]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    repeated = [f"{name} ({calls[name]} times)" for name in names if calls[name] > 1]
    if repeated:
        raise ConfigError(f"layer(s) {', '.join(repeated)} run more than once per forward pass (shared modules); "
                          "a probed layer gives one point per input: name layers that run once")
    never = [name for name in names if calls[name] == 0]
    if len(never) == len(names):
        raise ConfigError(f"none of the layers {list(patterns)} selects runs in a forward pass ({', '.join(never)}); "
                          "name layers that run (e.g. a block rather than a dropout that is skipped)")
    if never:
        warnings.warn(f"probe_model: {len(never)} of the {len(names)} layers that {list(patterns)} selects never "
                      f"run in a forward pass and are left out: {', '.join(never)}", stacklevel=3)
    return [name for name in names if calls[name] == 1]


def _settings(name: str, settings: Mapping[str, Mapping[str, Any]]) -> Any:
    """The settings dataclass of analysis ``name`` with the fields ``settings[name]`` gives.

    Raises:
        ConfigError: unknown field or invalid value.
    """
    given = dict(settings.get(name) or {})
    try:
        return settings_for(name, {}, given)
    except ValueError as error:
        raise ConfigError(f"{name} settings {given}: {error}") from error


def _check_analysis(name: str) -> None:
    """Refuse an unknown analysis or one that does not run on a network.

    Raises:
        ConfigError: naming the analyses there are, or where the numbers come from instead.
    """
    if name not in list_analyses():
        raise ConfigError(f"unknown analysis {name!r}; analyses are: {', '.join(list_analyses())}")
    if load_analysis(name).reads_run_files:
        raise ConfigError(f"the {name} analysis reads a run's files, not a network; read them with "
                          "load_metrics(run_dir)")


def load_dynamics(run: str | Path) -> pandas.DataFrame:
    """A run's ``dynamics.csv`` (or a report's, or any such file) as a DataFrame: columns
    ``epoch`` (int: completed epochs, 0 = at initialisation), ``layer`` (``""`` for numbers of the
    whole network), ``metric``, ``value`` (float, NaN where a probe failed), and ``run`` first in
    a ``probe.py`` report's file.

    Args:
        run: a run directory (``runs/<experiment>/<run_id>``), a report folder, or the CSV itself.

    Raises:
        ImportError: pandas is not installed.
        ConfigError: there is no such file.
    """
    return _read_table(run, DYNAMICS_FILE, {"layer": str, "metric": str, "run": str}, keep_empty=True)


def load_metrics(run: str | Path) -> pandas.DataFrame:
    """A run's ``metrics.csv`` as a DataFrame: one row per completed epoch, columns ``epoch``,
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``val_acc_top5``, ``epoch_seconds``
    (floats, NaN where an epoch had no validation; see the README's "Training records").

    Args:
        run: a run directory or the CSV itself.

    Raises:
        ImportError: pandas is not installed.
        ConfigError: there is no such file.
    """
    return _read_table(run, METRICS_FILE, {}, keep_empty=False)


def _read_table(run: str | Path, name: str, text_columns: dict[str, type], keep_empty: bool) -> pandas.DataFrame:
    """``run/name`` (or ``run`` itself when it is a file) read by pandas; ``text_columns`` stay
    strings (``""`` for empty cells when ``keep_empty``)."""
    try:
        import pandas
    except ImportError as error:
        raise ImportError(f"reading {name} into a DataFrame needs pandas: pip install \"attnconv-pl[pandas]\" "
                          "(or pip install pandas)") from error
    path = Path(run)
    path = path if path.is_file() else path / name
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; give a run directory (runs/<experiment>/<run_id>) or the {name} "
                          "file itself")
    return pandas.read_csv(path, dtype=text_columns, keep_default_na=not keep_empty,
                           na_values=["nan", "NaN"] if keep_empty else None)
