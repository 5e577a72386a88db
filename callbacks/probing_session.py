"""The ``probing:`` section: the one probing session every probing callback of a run shares."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from attnconv_pl.analyses.session import LEGACY_SECTION, SHARED_FIELDS, ProbingSession, ProbingSettings
from attnconv_pl.offline.data_choice import forward_context, load_probe_set
from callbacks._settings import options_from

_DEFAULT_SESSIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""The session of a trainer given no :class:`ProbingSessionCallback` (default settings)."""


@options_from(ProbingSettings, enabled=None)
class ProbingSessionCallback(Callback):
    """What every analysis of the run shares (the ``probing:`` config section, ``--probing.KEY``):
    one :class:`~attnconv_pl.analyses.session.ProbingSession` that the probing callbacks
    (``FeatureDynamics`` and the analyses run on the network) build their analyses with and draw
    their input sets from (each loaded once). Without this callback among a trainer's callbacks,
    they share a session with the default settings.

    Args:
    """

    def __init__(self, **settings: Any) -> None:
        self.settings = ProbingSettings(**settings)
        self._session: Optional[ProbingSession] = None

    def session(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> ProbingSession:
        """The run's session, on the module's current device, under ``precision`` (default: the
        trainer's); its input sets come from the un-augmented splits of the trainer's data module."""
        if self._session is None:
            datamodule = trainer.datamodule
            self._session = ProbingSession(
                self.settings, lambda split, size, seed: load_probe_set(datamodule, split, size, seed, own_data=True),
                pl_module.device, max_epochs=trainer.max_epochs, run_dir=Path(trainer.default_root_dir),
                hparams=dict(getattr(pl_module, "hparams", {})))
        session = self._session
        if session.autocast is None or session.device != pl_module.device:
            session.device = pl_module.device
            session.autocast = (forward_context(self.settings.precision, session.device) if self.settings.precision
                                else trainer.precision_plugin.forward_context) or nullcontext
        return session

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._session = None  # its input sets


def forget_default_session(trainer: pl.Trainer) -> None:
    """Drop the default session of ``trainer`` (its input sets), at the end of a fit."""
    _DEFAULT_SESSIONS.pop(trainer, None)


def session_of(trainer: pl.Trainer, pl_module: pl.LightningModule) -> ProbingSession:
    """The probing session of ``trainer``: its :class:`ProbingSessionCallback`'s, else one with the
    default settings (shared by every probing callback of the trainer)."""
    owner = next((callback for callback in trainer.callbacks if isinstance(callback, ProbingSessionCallback)), None)
    if owner is None:
        owner = _DEFAULT_SESSIONS.setdefault(trainer, ProbingSessionCallback())
    return owner.session(trainer, pl_module)


def move_legacy_probing_keys(config: Namespace, argv: Sequence[str] = ()) -> None:
    """Read the shared settings that a config (or a run's saved ``config.yaml``) made before the
    ``probing:`` section, or an old ``--dynamics.KEY`` flag, gives in the ``dynamics:`` section as
    ``probing.*`` (one deprecation line), and clear them there; a ``--probing.KEY`` flag among the
    command line ``argv`` wins over them."""
    moved = {key: config[LEGACY_SECTION][key] for key in SHARED_FIELDS if config[LEGACY_SECTION].get(key) is not None}
    if not moved:
        return
    given = {key for key in SHARED_FIELDS if any(arg.split("=")[0] == f"--probing.{key}" for arg in argv)}
    for key, value in moved.items():
        if key not in given:
            config.probing[key] = value
        config[LEGACY_SECTION][key] = None
    old, new = (", ".join(f"{section}.{key}" for key in moved) for section in (LEGACY_SECTION, "probing"))
    rank_zero_info(f"deprecated: {old} moved to the probing: section (shared by every analysis), read as {new}; "
                   "the old spelling goes in the next release")
