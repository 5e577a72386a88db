"""The analyses: each a settings dataclass, a runner and its metric families (see ``base``).

:data:`ANALYSES` maps each name to the module and class of its runner; :func:`load_analysis`
imports it when first needed, so listing them (``probe.py --help``) loads no torch.
"""

from __future__ import annotations

import importlib

from attnconv_pl.analyses.base import Analysis, AnalysisResult, MetricFamily

ANALYSES = {
    "training_records": ("attnconv_pl.analyses.training_records", "TrainingRecordsAnalysis"),
    "dynamics": ("attnconv_pl.analyses.dynamics", "Dynamics"),
    "robustness": ("attnconv_pl.analyses.robustness", "Robustness"),
    "single_node": ("attnconv_pl.analyses.single_node", "SingleNode"),
    "stiffness": ("attnconv_pl.analyses.stiffness", "Stiffness"),
    "similarity": ("attnconv_pl.analyses.similarity", "Similarity"),
}
"""Analysis name -> (module, class) of its runner, in report order."""


def list_analyses() -> list[str]:
    return list(ANALYSES)


def load_analysis(name: str) -> type[Analysis]:
    """The runner class of analysis ``name``.

    Raises:
        ValueError: no analysis has that name (the message lists them).
    """
    if name not in ANALYSES:
        raise ValueError(f"unknown analysis {name!r}; analyses are: {', '.join(ANALYSES)}")
    module, cls = ANALYSES[name]
    return getattr(importlib.import_module(module), cls)


def metric_family(metric: str) -> MetricFamily | None:
    """The family a metric of ``dynamics.csv`` belongs to, over every analysis (None: none)."""
    for name in ANALYSES:
        family = load_analysis(name).family_of(metric)
        if family is not None:
            return family
    return None


__all__ = ["ANALYSES", "Analysis", "AnalysisResult", "MetricFamily", "list_analyses", "load_analysis",
           "metric_family"]
