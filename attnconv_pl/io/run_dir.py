"""The resolved config train.py writes into every run directory (``<run_dir>/config.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from attnconv_pl.errors import ProbeInputError

RUN_CONFIG = "config.yaml"
"""File name of a run's resolved config, in its run directory."""


def read_run_config(run_dir: Optional[Path]) -> dict[str, Any]:
    """The resolved config ``run_dir/config.yaml`` written by train.py ({} when absent).

    Raises:
        ProbeInputError: the file exists but is not a YAML mapping.
    """
    path = run_dir / RUN_CONFIG if run_dir is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ProbeInputError(f"{path} is not valid YAML ({error}); restore the config train.py wrote") from error
    if not isinstance(config, dict):
        raise ProbeInputError(f"{path} is not a config mapping; restore the config train.py wrote")
    return config
