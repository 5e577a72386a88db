"""The data and device ``probe.py`` probes on: the run's own data or another dataset
(``--data``), the probe set drawn exactly as the training callback draws it, the device and the
run's precision."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Optional

import torch

from attnconv_pl.analyses.base import LabelledInputs
from attnconv_pl.capture.probe_set import load_probe_images, select_probe_indices
from attnconv_pl.data import DATAMODULES, SPLITS, ClassificationDataModule, create_datamodule
from attnconv_pl.errors import ProbeInputError
from attnconv_pl.offline.checkpoints import datamodule_classes

MIXED_PRECISIONS = ("16-mixed", "bf16-mixed")


@dataclass(frozen=True)
class DataChoice:
    """The data ``--data`` and ``--data_dir`` ask for; None fields mean "as the run was trained".

    Attributes:
        dataset: a name of ``attnconv_pl.data.DATAMODULES`` (another dataset than the run's).
        split: ``train``, ``val`` or ``test``.
        data_dir: folder holding the dataset's files.
    """

    dataset: Optional[str] = None
    split: Optional[str] = None
    data_dir: Optional[str] = None

    @classmethod
    def parse(cls, spec: Optional[str], data_dir: Optional[str] = None) -> DataChoice:
        """``SPLIT``, ``NAME`` or ``NAME:SPLIT`` (e.g. ``test``, ``cifar10``, ``digits:test``).

        Raises:
            ProbeInputError: an unknown dataset name or split.
        """
        if not spec:
            return cls(data_dir=data_dir)
        if ":" in spec:
            name, split = spec.split(":", 1)
        else:
            name, split = (None, spec) if spec in SPLITS else (spec, "")
        if name is not None and name not in DATAMODULES:
            raise ProbeInputError(
                f"--data {spec}: unknown dataset {name!r}; give SPLIT, NAME or NAME:SPLIT with NAME one of "
                f"{', '.join(sorted(DATAMODULES))} and SPLIT one of {', '.join(SPLITS)}")
        if split and split not in SPLITS:
            raise ProbeInputError(f"--data {spec}: unknown split {split!r}; splits are {', '.join(SPLITS)}")
        return cls(dataset=name, split=split or None, data_dir=data_dir)


ProbeSet = LabelledInputs
"""A probe set: inputs of one split drawn by the probe seed (see :class:`LabelledInputs`)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ProbeInputError: CUDA asked for but not available, or an unknown device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ProbeInputError(f"--device {name}: not a device ({error}); use auto, cpu or cuda[:N]") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ProbeInputError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return device


def forward_context(precision: Any, device: torch.device) -> Optional[Callable[[], AbstractContextManager]]:
    """The autocast the run trained (and was probed) under: Lightning's mixed-precision
    context for ``16-mixed`` / ``bf16-mixed``, None (float32) otherwise."""
    if str(precision) in MIXED_PRECISIONS:
        from lightning.pytorch.plugins.precision import MixedPrecision

        return MixedPrecision(str(precision), device.type).forward_context
    return None


def build_datamodule(class_path: str, init_args: dict[str, Any], choice: DataChoice,
                     model_hparams: dict[str, Any]) -> ClassificationDataModule:
    """The data module to draw the probe set from: the run's (``class_path``, ``init_args`` as
    :func:`~attnconv_pl.offline.checkpoints.data_config` returns them: a registered data module and
    plain values), or ``choice.dataset`` built for the model's input shape (``image_size`` /
    ``in_chans`` when the data module takes them) with the run's ``data_dir``;
    ``choice.data_dir`` overrides it.

    Raises:
        ProbeInputError: the data module cannot be built, or its images do not have the
            model's input shape.
    """
    data_dir = {"data_dir": choice.data_dir} if choice.data_dir else {}
    try:
        if choice.dataset is None:
            datamodule = datamodule_classes()[class_path](**{**init_args, **data_dir})
        else:
            parameters = inspect.signature(DATAMODULES[choice.dataset].__init__).parameters
            shape = {"image_size": model_hparams.get("image_size"), "in_chans": model_hparams.get("in_chans")}
            kwargs = {key: value for key, value in {**shape, "download": False}.items() if key in parameters}
            if "data_dir" in init_args:
                kwargs["data_dir"] = init_args["data_dir"]
            datamodule = create_datamodule(choice.dataset, **{**kwargs, **data_dir})
    except (TypeError, ValueError) as error:
        raise ProbeInputError(f"cannot build the data module {choice.dataset or class_path}: {error}") from error
    expected = (model_hparams.get("in_chans"), model_hparams.get("image_size"))
    if choice.dataset is not None and (datamodule.in_chans, datamodule.image_size) != expected:
        raise ProbeInputError(
            f"--data {choice.dataset}: its images are {datamodule.in_chans}x{datamodule.image_size}x"
            f"{datamodule.image_size} but the model takes {expected[0]}x{expected[1]}x{expected[1]}; probe "
            "with a dataset of the model's input shape")
    return datamodule


def named_datamodule(name: str, data_kwargs: dict[str, Any],
                     data_dir: Optional[str]) -> tuple[ClassificationDataModule, dict[str, Any]]:
    """The registered dataset ``name`` built with ``data_kwargs`` (e.g. ``{"image_size": 32}``) and
    ``data_dir``, never downloading (the data a bare weights file is probed on), and the arguments
    it was built with.

    Raises:
        ProbeInputError: ``data_kwargs`` are not options of that data module, or it cannot be built.
    """
    parameters = inspect.signature(DATAMODULES[name].__init__).parameters
    fixed = {key: value for key, value in {"download": False, "data_dir": data_dir}.items()
             if key in parameters and value is not None}
    init_args = {**data_kwargs, **fixed}
    try:
        return create_datamodule(name, **init_args), init_args
    except (TypeError, ValueError) as error:
        options = ", ".join(key for key in parameters if key not in ("self", "download"))
        raise ProbeInputError(f"--data {name} with --data_kwargs {data_kwargs}: {error}; its options are: "
                              f"{options}") from error


def dataset_name(datamodule: ClassificationDataModule) -> str:
    """The registry name of a data module (``digits``, ``cifar10``, ...), else its class name."""
    names = {cls: name for name, cls in DATAMODULES.items()}
    return names.get(type(datamodule), type(datamodule).__name__)


def load_probe_set(datamodule: ClassificationDataModule, split: str, size: int, seed: int,
                   own_data: bool) -> ProbeSet:
    """The probe set exactly as the callback draws it: ``select_probe_indices`` over the
    un-augmented split (``eval_dataset`` builds only that split).

    Raises:
        ProbeInputError: the dataset's files are missing (the message says where and how to
            get them) or the split is too small.
    """
    try:
        dataset = datamodule.eval_dataset(split)
        indices = select_probe_indices(len(dataset), size, seed)
    except (FileNotFoundError, ValueError) as error:
        raise ProbeInputError(
            f"the {split} split of {dataset_name(datamodule)} is not available: {error} "
            "(probe.py never downloads; pass --data_dir DIR where the files are)") from error
    images, labels = load_probe_images(dataset, indices)
    return ProbeSet(images, labels, indices, dataset_name(datamodule), split, own_data)


