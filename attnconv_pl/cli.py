"""The training command line: LightningCLI plus run directories, W&B offline mode and resume."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, Optional

import lightning.pytorch as pl
import yaml
from jsonargparse import Namespace
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from attnconv_pl.analyses.session import ProbingSettings
from attnconv_pl.data import ClassificationDataModule
from attnconv_pl.errors import ConfigError, check_creatable_dir
from attnconv_pl.io.atomic import DiskFullError, atomic_write_text, free_bytes, mebibytes
from attnconv_pl.io.console import silence_known_noise
from attnconv_pl.io.launch_record import LaunchRecord
from attnconv_pl.io.run_lock import RunLock, acquire_run_lock, is_launching_process
from attnconv_pl.io.run_summary import started_wandb_loggers
from attnconv_pl.io.wandb_run import wandb_id_of_run
from attnconv_pl.models._options import UnknownOptionError
from attnconv_pl.offline.checkpoints import callback_state, epoch_checkpoints, read_checkpoint, run_dir_of
from callbacks import (
    EpochCheckpoint,
    EpochMetrics,
    EpochSeeding,
    FeatureDynamics,
    ProbingSessionCallback,
    model_probing_callbacks,
)
from callbacks._probing import ProbingCallback
from callbacks.probing_session import move_legacy_probing_keys

RUN_ID_ENV = "ATTNCONV_RUN_ID"
"""Environment variable through which the run id reaches DDP worker processes (same run dir)."""

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.WandbLogger",
    "init_args": {"project": "attnconv-pl"},
}

DEFAULT_MODEL = {"class_path": "attnconv_pl.module.ClassifierModule"}
"""The model of a config that names none."""

RUN_DIR_SAVE_DIR = "."
"""A logger's ``save_dir`` meaning "the run directory", as ``config.yaml`` stores it."""


MOVED_MODULES = {"attnconv_pl.data.frozen_features": "attnconv_pl.heads.frozen_features"}
"""Modules that moved, by the old name that configs saved before the move name in ``class_path``."""


def alias_moved_modules() -> None:
    """Make every old name of :data:`MOVED_MODULES` import its new module, so that the saved
    ``config.yaml`` of a run made before a move still resumes."""
    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))


def run_dir_to_resume(ckpt_path: Path) -> Optional[Path]:
    """The run directory of a checkpoint when it holds the run's ``config.yaml``, else None."""
    run_dir = run_dir_of(ckpt_path)
    return run_dir if run_dir is not None and (run_dir / "config.yaml").is_file() else None


class TrainArgumentParser(LightningArgumentParser):
    """The parser of ``train.py``: a bad option prints one ``error:`` message (no usage block)."""

    @override
    def error(self, message: str, ex: Optional[Exception] = None) -> NoReturn:
        print(f"error: {message}\n(`python train.py --help` lists every option)", file=sys.stderr)
        raise SystemExit(2)


class RunConfigSaver(SaveConfigCallback):
    """Write the resolved config to ``<run_dir>/config.yaml`` (atomically) and log it, every
    section, as the hyper-parameters of each logger (the W&B run's config); rank zero only.

    Paths that mean "this run directory" are not stored, so a run directory that was moved or
    copied is resumed in its new place: ``trainer.default_root_dir`` is stored as null and a
    logger's ``save_dir`` pointing into it as :data:`RUN_DIR_SAVE_DIR` (``.``; every logger
    takes it, where some, as CSVLogger, require a save_dir). So are the W&B settings each launch
    derives (:func:`_configure_wandb_logger`), so the config reruns as a new run with its own W&B run.
    """

    @override
    def save_config(self, trainer, pl_module, stage) -> None:
        run_dir = str(trainer.default_root_dir)
        config = self.config.clone()
        config.ckpt_path = None  # the config of the run, not of this resume: --config reruns, --ckpt_path resumes
        config.trainer.default_root_dir = None
        for logger in _logger_configs(config.trainer.logger):
            if logger.init_args.get("save_dir") == run_dir:
                logger.init_args.save_dir = RUN_DIR_SAVE_DIR
            if _is_wandb(logger):
                _forget_derived_wandb_args(logger.init_args, Path(run_dir), config)
        text = self.parser.dump(config, skip_none=False)
        atomic_write_text(Path(run_dir) / self.config_filename, text)
        for logger in trainer.loggers:
            logger.log_hyperparams(yaml.safe_load(text))
        for owner in (pl_module, trainer.datamodule):  # the config is theirs: not Lightning's flat copy beside it
            if owner is not None:
                owner._log_hyperparams = False


class TrainCLI(LightningCLI):
    """``python train.py [--config configs/NAME.yaml] [--section.key value ...]``.

    Adds to LightningCLI: ``--experiment`` / ``--run_id`` / ``--runs_dir`` naming the run directory
    ``<runs_dir>/<experiment>/<run_id>/``, ``--ckpt_path`` to resume (in the checkpoint's own run
    directory), the ``checkpoint`` section (:class:`callbacks.EpochCheckpoint`), ``metrics.csv`` in every
    run (:class:`callbacks.EpochMetrics`, no options), and links the data
    module's ``num_classes``, ``in_chans`` and ``image_size`` into the model. The ``dynamics``
    section configures :class:`callbacks.FeatureDynamics`. A ``WandbLogger`` (the default logger)
    logs every launch of a run directory to one W&B run (:mod:`attnconv_pl.io.wandb_run`), with the
    whole config (:class:`RunConfigSaver`) and ``--wandb_group`` / ``--wandb_job_type``.

    The model is any LightningModule that takes ``num_classes``, ``in_chans`` and
    ``image_size`` (``model.class_path``; :data:`DEFAULT_MODEL`, the image classifier, when the
    config names none) and configures its own optimiser: :class:`attnconv_pl.module.ClassifierModule`
    or :class:`attnconv_pl.heads.HeadModule`.
    """

    def __init__(self, args: Optional[list[str]] = None) -> None:
        """Parse ``args`` (default: ``sys.argv[1:]``) and build data, model and trainer; if that
        fails, nothing it created in the run directory is left (:meth:`discard_failed_launch`)."""
        alias_moved_modules()
        self.argv = list(sys.argv[1:] if args is None else args)
        self.run_dir: Optional[Path] = None
        self.launch: Optional[LaunchRecord] = None
        self.run_lock: Optional[RunLock] = None
        try:
            super().__init__(
                pl.LightningModule,
                ClassificationDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_callback=RunConfigSaver,
                parser_class=TrainArgumentParser,
                # EpochSeeding always (the config's trainer.callbacks add to it); Lightning's own
                # ModelCheckpoint off: EpochCheckpoint names checkpoints by completed epochs
                trainer_defaults={"callbacks": [EpochSeeding()], "enable_checkpointing": False},
                save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
                parser_kwargs={"description": "Train a classifier and probe its feature dynamics.",
                               "allow_abbrev": False},
                args=args,
                run=False,
                auto_configure_optimizers=False,  # every model configures its optimiser and schedule
            )
        except BaseException:
            self.discard_failed_launch()
            raise

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=Optional[str], default=None,
                            help="Experiment name (run directory level); default: the config file's name.")
        parser.add_argument("--run_id", type=Optional[str], default=None,
                            help="Run name inside the experiment; default: <arch or head>-<timestamp>.")
        parser.add_argument("--runs_dir", type=str, default="runs", help="Root of all run directories.")
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="Resume from this checkpoint (e.g. runs/EXP/RUN/checkpoints/last.ckpt).")
        parser.add_argument("--wandb_group", type=Optional[str], default=None,
                            help="W&B group of the run (a study passes its name), so that W&B's panels "
                                 "compare its variants and seeds; ignored without a WandbLogger.")
        parser.add_argument("--wandb_job_type", type=Optional[str], default=None,
                            help="W&B job type of the run (a study passes the variant's name); "
                                 "ignored without a WandbLogger.")
        # metrics and dynamics before checkpoint: the checkpoint of an epoch is written after that
        # epoch's metrics row and snapshot, and records its probes as done or pending (resume-safe)
        parser.add_lightning_class_args(EpochMetrics, "metrics")
        parser.add_lightning_class_args(ProbingSessionCallback, "probing")
        parser.add_lightning_class_args(FeatureDynamics, "dynamics")
        for name, callback in model_probing_callbacks().items():  # every analysis run on the network
            parser.add_lightning_class_args(callback, name)
        parser.add_lightning_class_args(EpochCheckpoint, "checkpoint")
        parser.set_defaults({"trainer.logger": DEFAULT_LOGGER, "model": DEFAULT_MODEL})
        for attribute in ("num_classes", "in_chans", "image_size"):
            parser.link_arguments(f"data.{attribute}", f"model.init_args.{attribute}", apply_on="instantiate")

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config
        ckpt_path = Path(config.ckpt_path) if config.ckpt_path else None
        if ckpt_path is not None and not ckpt_path.is_file():
            raise ConfigError(
                f"--ckpt_path {ckpt_path} does not exist. Checkpoints of a run are in "
                f"<runs_dir>/<experiment>/<run_id>/checkpoints/ (last.ckpt resumes the latest epoch)."
            )
        check_max_epochs(config.trainer.max_epochs)
        move_legacy_probing_keys(config, self.argv)
        silence_known_noise(num_workers=(config.data.get("init_args") or {}).get("num_workers"))
        self.run_dir = (run_dir_to_resume(ckpt_path) if ckpt_path else None) or self._new_run_dir(config)
        check_creatable_dir(self.run_dir, "--runs_dir", "the root of the run directories")
        if is_launching_process():  # DDP workers write into the run directory of their launcher
            record = LaunchRecord.before_launch(self.run_dir)
            self.run_lock = acquire_run_lock(self.run_dir)
            self.launch = record  # from here on, a launch that fails on bad input removes what it created
        config.trainer.default_root_dir = str(self.run_dir)
        loggers = _logger_configs(config.trainer.logger)
        for logger in loggers:
            _point_logger_at_run(logger, self.run_dir)
        wandb_loggers = [logger for logger in loggers if _is_wandb(logger)]
        for logger in wandb_loggers:
            _configure_wandb_logger(logger.init_args, self.run_dir, config)
        if not wandb_loggers and (config.wandb_group or config.wandb_job_type):
            rank_zero_info("--wandb_group and --wandb_job_type are ignored: the run logs to no WandbLogger")

    def discard_failed_launch(self) -> None:
        """Remove what this launch created in its run directory, for a launch that stopped on bad
        input (see :class:`~attnconv_pl.io.launch_record.LaunchRecord`: nothing once it wrote a
        checkpoint), after finishing the W&B runs it started and releasing the lock. Only in the
        launching process; calling it again does nothing."""
        if self.launch is None:
            return
        launch, self.launch = self.launch, None
        trainer = getattr(self, "trainer", None)
        for logger in started_wandb_loggers(trainer) if trainer is not None else []:
            logger.experiment.finish(exit_code=2)
        if self.run_lock is not None:
            self.run_lock.release()
        launch.discard()

    def _new_run_dir(self, config: Namespace) -> Path:
        experiment = config.experiment or _config_stem(config) or "default"
        name = (model_name(config.model.get("init_args") or {}) or "model").replace(":", "-").replace("/", "-")
        run_id = config.run_id or os.environ.get(RUN_ID_ENV) or f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        os.environ[RUN_ID_ENV] = run_id
        return Path(config.runs_dir) / experiment / run_id


def model_name(hyperparameters: Any) -> Optional[str]:
    """What a model's arguments say it is: ``arch`` (ClassifierModule) or ``head`` (HeadModule);
    None for a model with neither."""
    return hyperparameters.get("arch") or hyperparameters.get("head")


def check_resume_checkpoint(path: Path, module: pl.LightningModule, callbacks: Sequence[Callback] = ()) -> None:
    """Check, before training, that ``path`` can resume ``module``: a checkpoint that the safe
    loader (``torch.load(weights_only=True)``, as probe.py) reads, of the same model class and
    architecture (``arch`` or ``head``, :func:`model_name`), whose
    weights have the module's names and shapes, and whose probing callbacks (among ``callbacks``,
    the trainer's) probed the layers and seed they are set to now, with the seed of the
    ``probing:`` section (see :meth:`ProbingCallback.check_state`).

    Raises:
        ProbeInputError: the file is not a readable checkpoint of train.py.
        ConfigError: it is one, of another architecture or with other weights.
    """
    checkpoint = read_checkpoint(path)
    hyperparameters = checkpoint.get("hyper_parameters") or {}
    advice = "resume with the run's own config (--config <run_dir>/config.yaml) and its checkpoint"
    saved_class = hyperparameters.get("_class_path")
    model_class = f"{type(module).__module__}.{type(module).__qualname__}"
    if saved_class is not None and saved_class.rsplit(".", 1)[-1] != type(module).__qualname__:
        raise ConfigError(f"--ckpt_path {path} holds a {saved_class} model, but the config trains a {model_class}; "
                          f"{advice}")
    saved_arch, arch = model_name(hyperparameters), model_name(module.hparams)
    if saved_arch != arch:
        raise ConfigError(f"--ckpt_path {path} holds a {saved_arch!r} model, but the config trains {arch!r}; {advice}")
    saved = {name: tuple(tensor.shape) for name, tensor in checkpoint["state_dict"].items()}
    expected = {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}
    differences = [f"missing {name}" for name in expected if name not in saved]
    differences += [f"unexpected {name}" for name in saved if name not in expected]
    differences += [f"{name} has shape {saved[name]}, the model {expected[name]}"
                    for name in expected if name in saved and saved[name] != expected[name]]
    if differences:
        shown = "; ".join(differences[:5]) + (f"; and {len(differences) - 5} more" if len(differences) > 5 else "")
        raise ConfigError(f"--ckpt_path {path}: its weights do not fit the {arch!r} model of the config "
                          f"({shown}); {advice}")
    shared = next((cb.settings for cb in callbacks if isinstance(cb, ProbingSessionCallback)), ProbingSettings())
    for callback in callbacks:
        if isinstance(callback, ProbingCallback) and callback.enabled:
            state = callback_state(checkpoint, type(callback).__name__)
            callback.check_state(state, callback.probed_layers(module), seed=shared.fill(callback.settings).seed)


def reported_error(error: BaseException) -> BaseException:
    """The error to show for ``error``: past the errors jsonargparse raises around a class that
    failed to build (a dump of every type of a Union, the given namespace), the class's own."""
    while error.__cause__ is not None and _raised_in_jsonargparse(error):
        error = error.__cause__
    return error


def _raised_in_jsonargparse(error: BaseException) -> bool:
    frame = error.__traceback__
    if frame is None:
        return False
    while frame.tb_next is not None:
        frame = frame.tb_next
    return str(frame.tb_frame.f_globals.get("__name__", "")).startswith("jsonargparse")


def error_message(error: BaseException) -> str:
    """The one-line message of a bad-input ``error`` (see :func:`reported_error`); options a
    model does not take also get the ``arch_kwargs`` flag that drops them, since a config's
    ``arch_kwargs`` stay when only ``arch`` is changed on the command line."""
    error = reported_error(error)
    message = str(error)
    if isinstance(error, UnknownOptionError):
        message += (f" Without {'it' if len(error.unknown) == 1 else 'them'}: --model.init_args.arch_kwargs "
                    f"'{_flow(error.kept)}' (a whole mapping replaces the config's arch_kwargs {_flow(error.given)}; "
                    "--model.init_args.arch alone keeps them)")
    return " ".join(message.split())


def _flow(mapping: dict[str, Any]) -> str:
    """``{'depth': 2}`` -> ``{depth: 2}`` (YAML flow style, as the command line takes it)."""
    return yaml.safe_dump(mapping, default_flow_style=True, width=10**6).strip()


def disk_full_message(full: BaseException, run_dir: Path) -> str:
    """The message of a run stopped by a full disk (``full``, see
    :func:`attnconv_pl.io.atomic.disk_full_cause`): what could not be written, the space free and
    needed, how to go on. Every file of the run directory is whole (each is written atomically)."""
    last = run_dir / "checkpoints" / "last.ckpt"
    numbered = epoch_checkpoints(run_dir)
    latest = last if last.is_file() else numbered[max(numbered)] if numbered else None
    if isinstance(full, DiskFullError):
        what = str(full)
    else:
        free = free_bytes(run_dir)
        need = f"; a checkpoint of this run needs {mebibytes(latest.stat().st_size)}" if latest else ""
        what = (f"no space left on device in {run_dir} "
                f"({mebibytes(free) + ' free' if free is not None else 'free space unknown'}{need})")
    then = (f"resume with: python train.py --config {run_dir / 'config.yaml'} --ckpt_path {latest}"
            if latest else "start the run again")
    return f"{what}; every file written so far is whole: free space (or give --runs_dir on another disk), then {then}"


def check_max_epochs(max_epochs: Optional[int]) -> None:
    """Refuse a ``max_epochs`` that trains nothing or forever (the schedule and the learning-rate
    decay need an end): it must be a positive number of epochs, or null for Lightning's default."""
    if max_epochs is not None and max_epochs < 1:
        raise ConfigError(f"--trainer.max_epochs must be >= 1 (the number of epochs to train), got {max_epochs}")


def _config_stem(config: Namespace) -> Optional[str]:
    paths = config.get("config") or []
    return Path(str(paths[-1])).stem if paths else None


def _logger_configs(logger: Any) -> list[Namespace]:
    """The logger entries of ``trainer.logger`` given as class_path/init_args namespaces."""
    entries = logger if isinstance(logger, list) else [logger]
    return [entry for entry in entries if isinstance(entry, Namespace) and "init_args" in entry]


def _is_wandb(logger: Namespace) -> bool:
    return str(logger.class_path).endswith("WandbLogger")


def _point_logger_at_run(logger: Namespace, run_dir: Path) -> None:
    """Put a logger's files in the run directory."""
    init_args = logger.init_args
    if init_args.get("save_dir") in (None, RUN_DIR_SAVE_DIR, "", "lightning_logs"):
        init_args.save_dir = str(run_dir)


def _wandb_run_name(run_dir: Path) -> str:
    """The default name of a run directory's W&B run: ``<experiment>/<run_id>``."""
    return f"{run_dir.parent.name}/{run_dir.name}"


def _configure_wandb_logger(init_args: Namespace, run_dir: Path, config: Namespace) -> None:
    """Name the W&B run after the run directory (unless named), give it the directory's W&B run
    id (:func:`attnconv_pl.io.wandb_run.wandb_id_of_run`; set in the launching process, the only one
    that logs) with ``resume="allow"`` (unless set), so every launch of the directory logs to one
    W&B run, and the group and job type of ``--wandb_group`` / ``--wandb_job_type``."""
    if not init_args.get("name"):
        init_args.name = _wandb_run_name(run_dir)
    if is_launching_process():
        init_args.id = wandb_id_of_run(run_dir, init_args.get("id"))
    if init_args.get("resume") is None:  # the parser fills wandb.init's resume=None over Lightning's "allow"
        init_args.resume = "allow"
    if config.wandb_group:
        init_args.group = config.wandb_group
    if config.wandb_job_type:
        init_args.job_type = config.wandb_job_type


def _forget_derived_wandb_args(init_args: Namespace, run_dir: Path, config: Namespace) -> None:
    """Undo :func:`_configure_wandb_logger` in a config to be saved: the id is the run
    directory's (``wandb_id``), the default name its path, group and job type the options'."""
    init_args.id = None
    if init_args.get("name") == _wandb_run_name(run_dir):
        init_args.name = None
    for key, option in (("group", config.wandb_group), ("job_type", config.wandb_job_type)):
        if option and init_args.get(key) == option:
            del init_args[key]
