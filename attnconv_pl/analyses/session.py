"""What every analysis of a run shares: :class:`ProbingSettings`, the ``probing:`` section of the
configs (the seed that draws the input sets and every random choice, the batch size of the forward
passes, the split and size of the probe set, the precision of the capture).

An analysis's own settings may name any of these fields; left at None there (the default) they
are the session's. Runs and configs made before the ``probing:`` section kept them in the
``dynamics:`` section: :func:`probing_settings_of` reads them from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Optional

from attnconv_pl.analyses.base import check_field_types

SHARED_FIELDS = ("seed", "batch_size", "probe_split", "probe_size")
"""The fields of :class:`ProbingSettings` an analysis's settings may also hold (None there: the
session's value)."""

LEGACY_SECTION = "dynamics"
"""The config section that held the shared fields before the ``probing:`` section existed."""

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")


@dataclass(frozen=True)
class ProbingSettings:
    """What every analysis of a run shares, with its defaults: the ``probing:`` section of the
    configs (``--probing.seed``, ...), of ``probe.py`` and of ``api.probe_model``.

    Args:
        seed: draws every input set (the probe set, an analysis's train and eval inputs), the
            random projections and every stochastic probe.
        batch_size: inputs per forward pass of the capture and of every analysis.
        probe_split: the split the probe set is drawn from (un-augmented).
        probe_size: inputs of the probe set (all of the split when it is smaller).
        precision: the precision of the capture and of every analysis's forward passes: ``32-true``,
            ``16-mixed`` or ``bf16-mixed`` autocast; default (None): the run's training precision.
    """

    seed: int = 0
    batch_size: int = 256
    probe_split: Literal["train", "val", "test"] = "val"
    probe_size: int = 1000
    precision: Optional[Literal["32-true", "16-mixed", "bf16-mixed"]] = None

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("batch_size", "probe_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def fill(self, settings: Any) -> Any:
        """``settings`` (an analysis's settings dataclass) with each of its :data:`SHARED_FIELDS`
        that is None set to this session's value."""
        shared = {name: getattr(self, name) for name in SHARED_FIELDS
                  if name in getattr(type(settings), "__dataclass_fields__", {}) and getattr(settings, name) is None}
        return dataclasses.replace(settings, **shared) if shared else settings


def probing_settings_of(config: Mapping[str, Any], overrides: Optional[Mapping[str, Any]] = None) -> ProbingSettings:
    """The probing settings of a run's config (its ``probing:`` section; for a config made before
    that section existed, the shared fields its ``dynamics:`` section held), with ``overrides``.

    Raises:
        ValueError / TypeError: a value that is not a valid setting.
    """
    values = {key: value for key, value in dict(config.get(LEGACY_SECTION) or {}).items()
              if key in SHARED_FIELDS and value is not None}
    values.update({key: value for key, value in dict(config.get("probing") or {}).items() if value is not None})
    values.update(overrides or {})
    names = set(ProbingSettings.__dataclass_fields__)
    return ProbingSettings(**{key: value for key, value in values.items() if key in names})
