"""attnconv-pl: train image classifiers with PyTorch Lightning and probe how they learn features.

The notebook API (:mod:`attnconv_pl.api`) is available at the top level, imported when first used
(so ``import attnconv_pl`` stays light): :func:`probe_model` runs the analyses on any network,
:func:`load_dynamics` and :func:`load_metrics` read a run's tables into pandas DataFrames.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ProbeRow", "load_dynamics", "load_metrics", "probe_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("attnconv_pl.api"), name)
    raise AttributeError(f"module 'attnconv_pl' has no attribute {name!r}")
