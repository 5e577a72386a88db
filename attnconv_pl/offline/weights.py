"""Bare weights files as checkpoints ``probe.py`` can probe: ``probe.py FILE --arch NAME --data NAME``.

A weights file is a state dict of the network alone, as ``torch.save(model.state_dict(), FILE)``
writes it (``.pt``, ``.pth``; a ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and a
``module.`` prefix from DDP are accepted) or a ``.safetensors`` file. It names neither its model nor
its data, so the user does: the network is ``create_model(arch, **arch_kwargs)`` for the images and
classes of the dataset ``--data NAME`` (built with ``--data_kwargs``). Each file becomes one
train.py-format checkpoint of epoch 0 (it has no training history), probed like any other, on that
dataset as its own data. Files are read safely: ``safetensors``, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from attnconv_pl.errors import ConfigError, ProbeInputError
from attnconv_pl.offline.checkpoints import (
    DATA_PACKAGE,
    RunCheckpoints,
    check_plain,
    first_sentence,
    load_torch_file,
    weight_differences,
)
from attnconv_pl.offline.data_choice import DataChoice, named_datamodule

WEIGHTS_FILE = "a state dict (torch.save(model.state_dict(), FILE)) or a .safetensors file"
WRAPPER_KEYS = ("state_dict", "model")
"""Keys under which training scripts commonly store the state dict inside a larger file."""
DDP_PREFIX = "module."


@dataclass(frozen=True)
class WeightsModel:
    """What a bare weights file is the weights of, as the user names it.

    Attributes:
        arch: a registered model name, ``timm:NAME`` or ``package.module:Name``.
        data: the dataset (``--data NAME[:SPLIT]``); its images and classes shape the network.
        arch_kwargs: options of the model (``--arch_kwargs``).
        data_kwargs: options of the data module (``--data_kwargs``, e.g. ``{in_chans: 3}``).
    """

    arch: str
    data: DataChoice
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    data_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_plain(self.arch_kwargs, "--arch_kwargs", Path("the command line"))
        check_plain(self.data_kwargs, "--data_kwargs", Path("the command line"))


def read_weights(path: Path) -> Any:
    """A weights file's content: a ``.safetensors`` file's tensors, else what
    ``torch.load(weights_only=True)`` gives (a train.py checkpoint too).

    Raises:
        ProbeInputError: the file is corrupt, truncated or not a weights file.
    """
    if path.suffix != ".safetensors":
        return load_torch_file(path, WEIGHTS_FILE)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError) as error:
        raise ProbeInputError(f"{path} is not a readable .safetensors file ({first_sentence(error)}); copy it "
                              "again, or give another file") from error


def is_training_checkpoint(content: Any) -> bool:
    """Whether a file's content is a checkpoint of train.py (weights and hyper-parameters)."""
    return isinstance(content, dict) and "state_dict" in content and "hyper_parameters" in content


def state_dict_of(content: Any, path: Path) -> dict[str, torch.Tensor]:
    """The network's state dict in a weights file's content: the mapping itself, or its
    ``state_dict`` / ``model`` entry; a ``module.`` prefix on every key is dropped.

    Raises:
        ProbeInputError: the content is not a mapping of names to tensors.
    """
    if isinstance(content, dict):
        content = next((content[key] for key in WRAPPER_KEYS if isinstance(content.get(key), dict)), content)
    if not isinstance(content, dict) or not content or not all(
            isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in content.items()):
        raise ProbeInputError(f"{path} holds no state dict (a mapping of parameter names to tensors); give "
                              f"{WEIGHTS_FILE}")
    if all(key.startswith(DDP_PREFIX) for key in content):
        content = {key.removeprefix(DDP_PREFIX): value for key, value in content.items()}
    return content


def weights_checkpoint(path: Path, model: WeightsModel, content: Any) -> dict[str, Any]:
    """A train.py-format checkpoint (epoch 0) of the weights in ``content`` (read from ``path``).

    Raises:
        ProbeInputError: no dataset is named, the model or data cannot be built, or the weights
            do not fit the model (missing, unexpected or reshaped parameters, or a tensor stored in a
            dtype that is not floating where the model's is: the message names them).
    """
    from attnconv_pl.module import ClassifierModule

    if model.data.dataset is None:
        raise ProbeInputError(f"{path} is a weights file, which does not say what data it is for: name the dataset "
                              "with --data NAME or NAME:SPLIT (e.g. --data digits)")
    weights = state_dict_of(content, path)
    datamodule, init_args = named_datamodule(model.data.dataset, model.data_kwargs, model.data.data_dir)
    shape = {"num_classes": datamodule.num_classes, "in_chans": datamodule.in_chans,
             "image_size": datamodule.image_size}
    try:
        module = ClassifierModule(arch=model.arch, arch_kwargs=model.arch_kwargs, **shape)
    except (TypeError, ValueError) as error:
        raise ProbeInputError(f"--arch {model.arch}: {error}") from error
    expected = module.model.state_dict()
    differences = weight_differences(expected, weights)
    if differences:
        raise ProbeInputError(
            f"the weights in {path} do not fit --arch {model.arch} with --arch_kwargs {model.arch_kwargs or '{}'} "
            f"for {shape['num_classes']} classes of {shape['in_chans']}x{shape['image_size']}x{shape['image_size']} "
            f"images (--data {model.data.dataset}): {differences}. Check --arch, --arch_kwargs and --data_kwargs")
    not_floats = dtype_differences(expected, weights)
    if not_floats:
        raise ProbeInputError(
            f"the weights in {path} are not all floating point where --arch {model.arch} has floats: {not_floats}; "
            "loading would turn them into floats silently. Give the file of the trained float weights")
    module.model.load_state_dict(weights)
    return {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": 0,
            "global_step": 0,
            "datamodule_hyper_parameters": {"_class_path": f"{DATA_PACKAGE}.{type(datamodule).__name__}",
                                            **init_args}}


def dtype_differences(expected: dict[str, torch.Tensor], saved: dict[str, torch.Tensor], shown: int = 5) -> str:
    """The tensors of ``saved`` stored in a dtype that is not floating where the model's tensor of
    the same name (in ``expected``) is: loading would cast them to floats silently. The first
    ``shown`` of them and a count of the rest; "" when there is none."""
    refused = [f"{name} is stored as {saved[name].dtype}, the model has {tensor.dtype}"
               for name, tensor in expected.items()
               if name in saved and tensor.is_floating_point() and not saved[name].is_floating_point()]
    more = f"; and {len(refused) - shown} more" if len(refused) > shown else ""
    return "; ".join(refused[:shown]) + more


def weights_runs(runs: Sequence[RunCheckpoints], model: WeightsModel, folder: Path) -> list[RunCheckpoints]:
    """``runs`` with each bare weights file replaced by its checkpoint (:func:`weights_checkpoint`),
    written to ``folder`` under the file's stem; run directories and train.py checkpoints are kept.

    Raises:
        ProbeInputError: a file cannot be read, or its weights do not fit the model.
    """
    converted = []
    for index, run in enumerate(runs):
        path = run.checkpoints[0]
        content = None if run.run_dir is not None else read_weights(path)
        if content is None or is_training_checkpoint(content):
            converted.append(run)
            continue
        target = folder / str(index) / f"{path.stem}.ckpt"
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(weights_checkpoint(path, model, content), target)
        converted.append(RunCheckpoints(None, (target,)))
    return converted


def parse_mapping(text: Optional[str], option: str) -> dict[str, Any]:
    """A YAML mapping given on the command line (``--arch_kwargs '{depth: 2}'``); {} when None.

    Raises:
        ConfigError: the text is not a YAML mapping.
    """
    import yaml

    if text is None:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{option} {text!r} is not YAML ({first_sentence(error)}); give a mapping such as "
                          "'{depth: 2, embed_dim: 64}'") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option} {text!r} is not a mapping; give one such as '{{depth: 2, embed_dim: 64}}'")
    return value
