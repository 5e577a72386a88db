"""The training command line: LightningCLI plus run directories, W&B offline mode and resume."""

from __future__ import annotations

import netrc
import os
import time
from pathlib import Path
from typing import Any, Optional

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from typing_extensions import override

from attnconv_pl.atomic import atomic_write_text
from attnconv_pl.checkpoints import run_dir_of
from attnconv_pl.data import ClassificationDataModule
from attnconv_pl.module import ClassifierModule
from callbacks import EpochCheckpoint, EpochMetrics, FeatureDynamics

RUN_ID_ENV = "ATTNCONV_RUN_ID"
"""Environment variable through which the run id reaches DDP worker processes (same run dir)."""

DEFAULT_LOGGER = {
    "class_path": "lightning.pytorch.loggers.WandbLogger",
    "init_args": {"project": "attnconv-pl"},
}


def has_wandb_credentials() -> bool:
    """Whether W&B can log online: an API key in the environment or in ``~/.netrc``."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def configure_wandb_mode() -> str:
    """Use W&B offline unless the user chose a mode or is logged in; returns the mode."""
    if "WANDB_MODE" not in os.environ and not has_wandb_credentials():
        os.environ["WANDB_MODE"] = "offline"
    return os.environ.get("WANDB_MODE", "online")


def run_dir_to_resume(ckpt_path: Path) -> Optional[Path]:
    """The run directory of a checkpoint when it holds the run's ``config.yaml``, else None."""
    run_dir = run_dir_of(ckpt_path)
    return run_dir if run_dir is not None and (run_dir / "config.yaml").is_file() else None


class RunConfigSaver(SaveConfigCallback):
    """Write the resolved config to ``<run_dir>/config.yaml`` (atomically, rank zero only)."""

    @override
    def save_config(self, trainer, pl_module, stage) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        atomic_write_text(Path(trainer.default_root_dir) / self.config_filename, text)


class TrainCLI(LightningCLI):
    """``python train.py [--config configs/NAME.yaml] [--section.key value ...]``.

    Adds to LightningCLI: ``--experiment`` / ``--run_id`` / ``--runs_dir`` naming the run directory
    ``<runs_dir>/<experiment>/<run_id>/``, ``--ckpt_path`` to resume (in the checkpoint's own run
    directory), the ``checkpoint`` section (:class:`callbacks.EpochCheckpoint`), ``metrics.csv`` in every
    run (:class:`callbacks.EpochMetrics`, no options), and links the data
    module's ``num_classes``, ``in_chans`` and ``image_size`` into the model. The ``dynamics``
    section configures :class:`callbacks.FeatureDynamics`.
    """

    def __init__(self, args: Optional[list[str]] = None) -> None:
        """Parse ``args`` (default: ``sys.argv[1:]``) and build data, model and trainer."""
        self.run_dir: Optional[Path] = None
        super().__init__(
            ClassifierModule,
            ClassificationDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RunConfigSaver,
            save_config_kwargs={"overwrite": True, "save_to_log_dir": False},
            parser_kwargs={"description": "Train a classifier and probe its feature dynamics.", "allow_abbrev": False},
            args=args,
            run=False,
            auto_configure_optimizers=False,  # ClassifierModule configures its optimiser and schedule
        )

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--experiment", type=Optional[str], default=None,
                            help="Experiment name (run directory level); default: the config file's name.")
        parser.add_argument("--run_id", type=Optional[str], default=None,
                            help="Run name inside the experiment; default: <arch>-<timestamp>.")
        parser.add_argument("--runs_dir", type=str, default="runs", help="Root of all run directories.")
        parser.add_argument("--ckpt_path", type=Optional[str], default=None,
                            help="Resume from this checkpoint (e.g. runs/EXP/RUN/checkpoints/last.ckpt).")
        # metrics before checkpoint: an epoch's row is written before its checkpoints (resume-safe)
        parser.add_lightning_class_args(EpochMetrics, "metrics")
        parser.add_lightning_class_args(EpochCheckpoint, "checkpoint")
        parser.add_lightning_class_args(FeatureDynamics, "dynamics")
        parser.set_defaults({"trainer.logger": DEFAULT_LOGGER})
        for attribute in ("num_classes", "in_chans", "image_size"):
            parser.link_arguments(f"data.{attribute}", f"model.init_args.{attribute}", apply_on="instantiate")

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config
        ckpt_path = Path(config.ckpt_path) if config.ckpt_path else None
        if ckpt_path is not None and not ckpt_path.is_file():
            raise SystemExit(
                f"error: --ckpt_path {ckpt_path} does not exist. Checkpoints of a run are in "
                f"<runs_dir>/<experiment>/<run_id>/checkpoints/ (last.ckpt resumes the latest epoch)."
            )
        self.run_dir = (run_dir_to_resume(ckpt_path) if ckpt_path else None) or self._new_run_dir(config)
        config.trainer.default_root_dir = str(self.run_dir)
        for logger in _logger_configs(config.trainer.logger):
            _point_logger_at_run(logger, self.run_dir)

    def _new_run_dir(self, config: Namespace) -> Path:
        experiment = config.experiment or _config_stem(config) or "default"
        arch = config.model.init_args.get("arch", "model") if "init_args" in config.model else "model"
        run_id = config.run_id or os.environ.get(RUN_ID_ENV) or f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"
        os.environ[RUN_ID_ENV] = run_id
        return Path(config.runs_dir) / experiment / run_id


def _config_stem(config: Namespace) -> Optional[str]:
    paths = config.get("config") or []
    return Path(str(paths[-1])).stem if paths else None


def _logger_configs(logger: Any) -> list[Namespace]:
    """The logger entries of ``trainer.logger`` given as class_path/init_args namespaces."""
    entries = logger if isinstance(logger, list) else [logger]
    return [entry for entry in entries if isinstance(entry, Namespace) and "init_args" in entry]


def _point_logger_at_run(logger: Namespace, run_dir: Path) -> None:
    """Put a logger's files in the run directory and name its run after it (unless set)."""
    init_args = logger.init_args
    if init_args.get("save_dir") in (None, ".", "", "lightning_logs"):
        init_args.save_dir = str(run_dir)
    if str(logger.class_path).endswith("WandbLogger") and not init_args.get("name"):
        init_args.name = f"{run_dir.parent.name}/{run_dir.name}"
