"""Train a classifier from a YAML config and probe its feature dynamics.

    python train.py                                   # configs/default.yaml: digits, no download
    python train.py --config configs/NAME.yaml [--section.key value ...]
    python train.py --config configs/NAME.yaml --ckpt_path runs/EXP/RUN/checkpoints/last.ckpt

``python train.py --help`` lists every option; ``--print_config`` prints the resolved config.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


def with_default_config(argv: list[str]) -> list[str]:
    """Prepend ``--config configs/default.yaml`` when the command line names no config."""
    if any(arg == "--config" or arg.startswith("--config=") for arg in argv):
        return argv
    if any(arg in ("-h", "--help") for arg in argv):
        return argv
    return ["--config", str(DEFAULT_CONFIG), *argv]


def main(argv: Optional[list[str]] = None) -> None:
    """Train as the command line ``argv`` (default: ``sys.argv[1:]``) says. Bad input stops with
    one ``error:`` line and exit status 2, leaving nothing of the launch behind
    (:meth:`TrainCLI.discard_failed_launch`); so does a full disk, keeping every epoch written."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from attnconv_pl.cli import TrainCLI, check_resume_checkpoint, disk_full_message, error_message
    from attnconv_pl.errors import ConfigError
    from attnconv_pl.io.atomic import disk_full_cause
    from attnconv_pl.io.run_summary import print_run_summary
    from attnconv_pl.io.wandb_mode import configure_wandb_mode

    sys.argv[1:] = with_default_config(sys.argv[1:] if argv is None else argv)  # DDP workers re-run sys.argv
    configure_wandb_mode()
    cli: Optional[TrainCLI] = None
    try:
        cli = TrainCLI()  # parses and validates the config, builds data, model and trainer
        if cli.config.ckpt_path:
            check_resume_checkpoint(Path(cli.config.ckpt_path), cli.model, cli.trainer.callbacks)
    except (ValueError, MisconfigurationException) as error:
        if cli is not None:  # else TrainCLI removed what it had created
            cli.discard_failed_launch()
        exit_with_error(error_message(error))
    try:
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path, weights_only=True)
    except (ConfigError, FileNotFoundError, MisconfigurationException) as error:
        cli.discard_failed_launch()
        exit_with_error(error_message(error))
    except SystemExit as stop:  # the parser's one error line, printed already
        if stop.code == 2:
            cli.discard_failed_launch()
        raise
    except Exception as error:
        full = disk_full_cause(error)
        if full is None:
            raise
        exit_with_error(disk_full_message(full, cli.run_dir))
    print_run_summary(cli.trainer, cli.run_dir)


def exit_with_error(message: str) -> NoReturn:
    """Report bad input as one line on stderr and exit with status 2 (no traceback)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    main()
