"""Find the checkpoints a user names and load them, with errors that say what to do.

A path names a checkpoint file or a run directory ``runs/<experiment>/<run_id>/`` (meaning its
``checkpoints/epoch=NNN.ckpt`` files in epoch order). Checkpoints inside one run directory form
one run. Finding runs only looks at paths (no torch import), so a mistyped path is reported at
once; reading a checkpoint imports torch when first needed.

Nothing read from a checkpoint or a run directory is imported or called by name: checkpoints are
loaded with ``torch.load(weights_only=True)``, the model is always ``ClassifierModule``, the data
module one of the registered ones (looked up, not imported), and their stored arguments must be
plain values (:func:`check_plain`). A network built from an import path (``arch:
package.module:Name``) is built only when the user names that same path (``trusted_arch``,
``probe.py --arch``); a ``timm:NAME`` network is looked up in timm's registry, without weights.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from attnconv_pl.errors import ConfigError, ProbeInputError
from attnconv_pl.io.run_dir import RUN_CONFIG

CHECKPOINTS_FOLDER = "checkpoints"
EPOCH_CHECKPOINT = re.compile(r"^epoch=(\d+)\.ckpt$")
"""Names of the numbered checkpoints of ``callbacks.EpochCheckpoint`` (NNN = completed epochs)."""
ZIP_MAGIC = b"PK\x03\x04"
"""First bytes of every checkpoint ``torch.save`` writes (a zip archive)."""
TRAIN_CHECKPOINT = "a .ckpt file written by train.py (runs/<experiment>/<run_id>/checkpoints/epoch=NNN.ckpt)"
"""What :func:`read_checkpoint` expects, for its messages."""
MODEL_CLASS_PATH = "attnconv_pl.module.ClassifierModule"
"""The one model class a checkpoint may name (LightningCLI's ``hyper_parameters["_class_path"]``)."""
DATA_PACKAGE = "attnconv_pl.data"
PLAIN_SCALARS = (type(None), bool, int, float, str)
"""Types of the plain values a stored argument may hold (inside lists, tuples and mappings)."""


@dataclass(frozen=True)
class RunCheckpoints:
    """The checkpoints of one run to probe.

    Attributes:
        run_dir: the run directory (``config.yaml``, ``checkpoints/``), or None for a
            checkpoint file that lies outside one.
        checkpoints: files to probe: numbered ones in epoch order, then others (``last.ckpt``)
            in the order given.
    """

    run_dir: Optional[Path]
    checkpoints: tuple[Path, ...]

    @property
    def name(self) -> str:
        """``<experiment>/<run_id>`` of the run directory, else the checkpoint file's stem."""
        if self.run_dir is not None:
            return f"{self.run_dir.parent.name}/{self.run_dir.name}"
        return self.checkpoints[0].stem

    def epoch_checkpoints(self) -> dict[int, Path]:
        """Every numbered checkpoint of the run directory (not only those to probe), by epoch."""
        return epoch_checkpoints(self.run_dir) if self.run_dir is not None else {}


def epoch_of_name(path: Path) -> Optional[int]:
    """The epoch in a file name ``epoch=NNN.ckpt``, else None."""
    match = EPOCH_CHECKPOINT.match(path.name)
    return int(match.group(1)) if match else None


def epoch_checkpoints(run_dir: Path) -> dict[int, Path]:
    """``{epoch: run_dir/checkpoints/epoch=NNN.ckpt}`` in epoch order (empty if there are none)."""
    folder = run_dir / CHECKPOINTS_FOLDER
    found = {epoch_of_name(path): path for path in folder.glob("epoch=*.ckpt")} if folder.is_dir() else {}
    return {epoch: found[epoch] for epoch in sorted(e for e in found if e is not None)}


def run_dir_of(checkpoint: Path) -> Optional[Path]:
    """The run directory of ``<run_dir>/checkpoints/<name>.ckpt``, or None outside one."""
    resolved = checkpoint.resolve()
    return resolved.parent.parent if resolved.parent.name == CHECKPOINTS_FOLDER else None


def _run_dir_of_folder(folder: Path) -> Path:
    """A run directory given as itself or as its ``checkpoints`` folder."""
    folder = folder.resolve()
    if folder.name == CHECKPOINTS_FOLDER and not (folder / CHECKPOINTS_FOLDER).is_dir():
        return folder.parent
    return folder


def collect_runs(paths: Sequence[str | Path]) -> list[RunCheckpoints]:
    """Group the given paths into runs, in the order each run is first named.

    A directory contributes all its numbered checkpoints; a file contributes itself (to its
    run directory's run when it lies in ``<run_dir>/checkpoints/``). A file named twice is
    probed once.

    Raises:
        ProbeInputError: a path does not exist, or a directory holds no numbered checkpoint.
    """
    runs: dict[Path, list[Path]] = {}
    run_dirs: dict[Path, Optional[Path]] = {}
    for given in paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise ProbeInputError(
                f"{given} does not exist; give a checkpoint file (runs/<experiment>/<run_id>/checkpoints/"
                "epoch=NNN.ckpt) or a run directory (runs/<experiment>/<run_id>)")
        if path.is_dir():
            run_dir = _run_dir_of_folder(path)
            found = list(epoch_checkpoints(run_dir).values())
            if not found:
                raise ProbeInputError(
                    f"{given} holds no checkpoints: expected {run_dir / CHECKPOINTS_FOLDER}/epoch=NNN.ckpt. "
                    "Train with `python train.py` (it writes them), or give a .ckpt file")
        else:
            run_dir, found = run_dir_of(path), [path.resolve()]
        key = run_dir if run_dir is not None else path.resolve()
        run_dirs[key] = run_dir
        listed = runs.setdefault(key, [])
        listed.extend(p for p in found if p not in listed)
    return [RunCheckpoints(run_dirs[key], tuple(_epoch_order(files))) for key, files in runs.items()]


def _epoch_order(files: list[Path]) -> list[Path]:
    numbered = sorted((p for p in files if epoch_of_name(p) is not None), key=epoch_of_name)
    return numbered + [p for p in files if epoch_of_name(p) is None]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The content of a checkpoint written by ``train.py`` (tensors on CPU).

    Loaded with ``torch.load(weights_only=True)``: plain tensors and Python values only.

    Raises:
        ProbeInputError: the file is not a PyTorch checkpoint, is truncated or corrupted, or
            lacks the model's weights and hyper-parameters.
    """
    checkpoint = load_torch_file(path, TRAIN_CHECKPOINT)
    missing = [key for key in ("state_dict", "hyper_parameters") if key not in checkpoint] \
        if isinstance(checkpoint, dict) else ["state_dict", "hyper_parameters"]
    if missing:
        raise ProbeInputError(
            f"{path} is a PyTorch file but not a checkpoint of train.py (it has no {' and no '.join(missing)}); "
            "give a checkpoint written by train.py, or probe a bare state dict with --arch NAME --data NAME")
    return checkpoint


def load_torch_file(path: Path, expected: str) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU: tensors and plain Python values only.

    Args:
        path: the file.
        expected: what the file should be, for the messages (e.g. :data:`TRAIN_CHECKPOINT`).

    Raises:
        ProbeInputError: the file holds other Python objects, is not a file ``torch.save``
            writes, or is truncated or corrupted.
    """
    import torch

    with path.open("rb") as handle:
        magic = handle.read(len(ZIP_MAGIC))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ProbeInputError(
            f"{path} holds Python objects that a safe load (torch.load(weights_only=True)) refuses: "
            f"{first_sentence(error)}; give {expected}, holding only tensors and plain values") from error
    except Exception as error:  # noqa: BLE001 - torch.load raises many types for bad files
        if magic != ZIP_MAGIC:
            raise ProbeInputError(f"{path} is not a PyTorch checkpoint (not the zip archive torch.save writes); "
                                  f"give {expected}") from error
        raise ProbeInputError(
            f"{path} is truncated or corrupted (torch.load: {first_sentence(error)}); copy it again, or give "
            f"another file") from error


def first_sentence(error: BaseException) -> str:
    """The first sentence of an error's message (its type when the message is empty)."""
    text = " ".join(str(error).split())
    return text.split(". ")[0].rstrip(".") if text else type(error).__name__


def checkpoint_epoch(path: Path, checkpoint: dict[str, Any]) -> int:
    """Completed training epochs of a checkpoint: from its name ``epoch=NNN.ckpt``, else from
    Lightning's fields (``epoch`` is the 0-based index of the epoch in progress, so a checkpoint
    written at an epoch's end after any step holds ``epoch + 1`` completed epochs)."""
    named = epoch_of_name(path)
    if named is not None:
        return named
    return int(checkpoint.get("epoch", 0)) + 1 if int(checkpoint.get("global_step", 0)) > 0 else 0


def model_hyperparameters(checkpoint: dict[str, Any], path: Path, trusted_arch: Optional[str] = None) -> dict[str, Any]:
    """The ``ClassifierModule`` arguments saved in a checkpoint (LightningCLI's ``_*`` keys dropped;
    a timm network's ``checkpoint_path`` option too: the checkpoint holds the weights).

    Args:
        checkpoint: the checkpoint's content (:func:`read_checkpoint`).
        path: its file, for messages.
        trusted_arch: an import path ``package.module:Name`` the user named; a checkpoint whose
            ``arch`` is an import path is accepted only when it is this one.

    Raises:
        ProbeInputError: the checkpoint names another model class (``_class_path``), holds
            arguments that are not plain values (:func:`check_plain`), or names an import path
            other than ``trusted_arch``.
    """
    saved = checkpoint["hyper_parameters"]
    if not isinstance(saved, dict):
        raise ProbeInputError(f"{path}: hyper_parameters is a {type(saved).__name__}, not a mapping; "
                              "give a checkpoint written by train.py")
    class_path = saved.get("_class_path", MODEL_CLASS_PATH)
    if class_path != MODEL_CLASS_PATH:
        raise ProbeInputError(
            f"{path} names the model class {class_path!r} (hyper_parameters._class_path); probe.py builds only "
            f"{MODEL_CLASS_PATH}. Probe a checkpoint written by train.py")
    arguments = {key: value for key, value in saved.items() if not str(key).startswith("_")}
    check_plain(arguments, "hyper_parameters", path)
    from attnconv_pl.models.external import is_external, is_import_path

    arch = arguments.get("arch")
    if isinstance(arch, str) and is_import_path(arch) and arch != trusted_arch:
        raise ProbeInputError(
            f"{path} holds a model built by {arch!r}, code imported from a module; probe.py never imports code "
            f"named inside a file. If you trust that code, name it yourself: probe.py ... --arch {arch}")
    if isinstance(arch, str) and is_external(arch) and isinstance(arguments.get("arch_kwargs"), dict):
        arguments["arch_kwargs"] = {key: value for key, value in arguments["arch_kwargs"].items()
                                    if key != "checkpoint_path"}
    return arguments


def build_module(checkpoint: dict[str, Any], path: Path, trusted_arch: Optional[str] = None):
    """A ``ClassifierModule`` built from a checkpoint's hyper-parameters, holding its weights.

    Args:
        checkpoint: the checkpoint's content (:func:`read_checkpoint`).
        path: its file, for messages.
        trusted_arch: the import path the user named (see :func:`model_hyperparameters`).

    Raises:
        ProbeInputError: the checkpoint names another model class or holds arguments that are
            not plain values, names an import path other than ``trusted_arch``, this version
            cannot build the model (unknown architecture or option), or the checkpoint's weights
            do not fit the model it builds.
    """
    from attnconv_pl.module import ClassifierModule

    hyperparameters = model_hyperparameters(checkpoint, path, trusted_arch)
    try:
        module = ClassifierModule(**hyperparameters)
    except ConfigError as error:
        raise ProbeInputError(f"{path}: {error}") from error
    except (TypeError, ValueError) as error:
        raise ProbeInputError(
            f"{path} holds a model this version cannot build (arch {hyperparameters.get('arch')!r}: {error}). "
            "Probe it with the attnconv-pl version that trained it") from error
    load_weights(module, checkpoint, path)
    return module


def load_weights(module, checkpoint: dict[str, Any], path: Path) -> None:
    """Load a checkpoint's ``state_dict`` into ``module`` (strict).

    Raises:
        ProbeInputError: the weights do not fit the module (missing, unexpected or reshaped).
    """
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        details = " ".join(str(error).split())[:300].rstrip(".")
        raise ProbeInputError(
            f"the weights in {path} do not fit the model this version builds for it "
            f"(arch {module.hparams.get('arch')!r}): {details}. Probe it with the attnconv-pl version "
            "that trained it") from error


def weight_differences(expected: dict[str, Any], saved: dict[str, Any], shown: int = 5) -> str:
    """What keeps the tensors ``saved`` from loading into a model whose state dict is ``expected``
    (both ``{name: tensor}``): missing and unexpected names and other shapes, the first ``shown``
    of them and a count of the rest; "" when they fit."""
    shapes = {name: tuple(tensor.shape) for name, tensor in saved.items()}
    wanted = {name: tuple(tensor.shape) for name, tensor in expected.items()}
    differences = [f"missing {name}" for name in wanted if name not in shapes]
    differences += [f"unexpected {name}" for name in shapes if name not in wanted]
    differences += [f"{name} has shape {shapes[name]}, the model {wanted[name]}"
                    for name in wanted if name in shapes and shapes[name] != wanted[name]]
    more = f"; and {len(differences) - shown} more" if len(differences) > shown else ""
    return "; ".join(differences[:shown]) + more


def callback_state(checkpoint: dict[str, Any], callback: str = "FeatureDynamics") -> dict[str, Any]:
    """The saved state of a callback (e.g. its ``layers``, ``seed``, ``probe_indices``), or {}."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if str(key).split("{")[0] == callback:
            return dict(state)
    return {}


def datamodule_classes() -> dict[str, type]:
    """The data modules a checkpoint or run directory may name, by class path: each registered
    data module (``attnconv_pl.data.DATAMODULES``) under its public path (``attnconv_pl.data.
    DigitsDataModule``) and its defining module's path (``attnconv_pl.data.digits.DigitsDataModule``).

    A stored class path is looked up here, never imported: no other class can be built from it.
    """
    from attnconv_pl.data import DATAMODULES

    return {path: cls for cls in DATAMODULES.values()
            for path in (f"{DATA_PACKAGE}.{cls.__name__}", f"{cls.__module__}.{cls.__qualname__}")}


def data_config(checkpoint: dict[str, Any], run_config: dict[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """``(class_path, init_args)`` of the data module a checkpoint was trained with: from the
    checkpoint's ``datamodule_hyper_parameters``, else the run's ``config.yaml``.

    ``class_path`` is the public path (``attnconv_pl.data.<Name>``) of a registered data module,
    a key of :func:`datamodule_classes`; ``init_args`` are plain values (:func:`check_plain`).

    Raises:
        ProbeInputError: neither says which data module it was, the one named is not a
            registered data module, or its arguments are not plain values.
    """
    from attnconv_pl.data import DATAMODULES, ClassificationDataModule

    saved = checkpoint.get("datamodule_hyper_parameters") or {}
    section = run_config.get("data") or {}
    if isinstance(saved, dict) and "_class_path" in saved:
        class_path, init_args = saved["_class_path"], {k: v for k, v in saved.items() if not str(k).startswith("_")}
        source, field, arguments = path, "datamodule_hyper_parameters._class_path", "datamodule_hyper_parameters"
    elif isinstance(section, dict) and "class_path" in section:
        class_path, init_args = section["class_path"], section.get("init_args") or {}
        run_dir = run_dir_of(path)
        source = run_dir / RUN_CONFIG if run_dir is not None else path
        field, arguments = "data.class_path", "data.init_args"
    else:
        raise ProbeInputError(
            f"{path} does not say which data it was trained on (no datamodule hyper-parameters, no config.yaml "
            "beside it); name a dataset with --data NAME[:SPLIT]")
    cls = datamodule_classes().get(class_path) if isinstance(class_path, str) else None
    if cls is None or not issubclass(cls, ClassificationDataModule):
        names = sorted(f"{DATA_PACKAGE}.{registered.__name__}" for registered in DATAMODULES.values())
        raise ProbeInputError(
            f"{source} names the data module {class_path!r} ({field}), which probe.py does not build: it builds "
            f"only the registered data modules ({', '.join(names)}). Probe on a registered dataset with "
            f"--data NAME ({', '.join(sorted(DATAMODULES))})")
    if not isinstance(init_args, dict):
        raise ProbeInputError(f"{source}: {arguments} is a {type(init_args).__name__}, not a mapping of arguments; "
                              "restore what train.py wrote, or probe on a registered dataset with --data NAME")
    check_plain(init_args, arguments, source)
    return f"{DATA_PACKAGE}.{cls.__name__}", dict(init_args)


def check_plain(value: Any, name: str, source: Path) -> None:
    """Check that a stored argument is a plain value: None, a bool, number or string, or a list,
    tuple or string-keyed mapping of plain values, with no mapping naming a class to build
    (a ``class_path`` key, as jsonargparse writes one).

    Models and data modules are built from such values only, so an argument cannot smuggle in
    a class: nothing on that path instantiates class paths found inside arguments.

    Raises:
        ProbeInputError: naming ``source`` and the argument (``name``, e.g.
            ``hyper_parameters.arch_kwargs.depth``).
    """
    if isinstance(value, dict):
        if "class_path" in value:
            raise ProbeInputError(
                f"{source}: {name} names a class to build ({value['class_path']!r}); probe.py builds models and "
                "data modules from plain values only, never from classes named in their arguments. Probe a "
                "checkpoint written by train.py")
        for key, item in value.items():
            if not isinstance(key, str):
                raise ProbeInputError(f"{source}: {name} has a key {key!r} that is not a string; "
                                      "probe a checkpoint written by train.py")
            check_plain(item, f"{name}.{key}", source)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_plain(item, f"{name}[{index}]", source)
    elif not isinstance(value, PLAIN_SCALARS):
        raise ProbeInputError(
            f"{source}: {name} is a {type(value).__name__}, not a plain value (None, a bool, number or string, "
            "or a list or mapping of them); probe a checkpoint written by train.py")
