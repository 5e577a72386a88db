"""Capture layer activations over the probe set: one point per input, per layer, per side.

A *layer* is a module named in ``model.named_modules()`` (:func:`resolve_layers`). For every
probed layer the forward hooks (:class:`ActivationRecorder`, :func:`capture_activations`)
record its *input* (the first tensor argument of ``forward``) and its *output* as points:
:func:`to_points` turns the tensor into one row per input with the reducer registered under
the chosen representation (:func:`register_reducer`), and rows wider than ``project_dim`` are
mapped by a fixed seeded Gaussian random projection (:class:`Projector`: the same matrix at
every epoch, in every process, after every resume), which approximately preserves pairwise
distances.

Under DDP each rank captures its shard of the probe set (:func:`shard_indices`) and
:func:`gather_in_probe_order` brings every rank's rows back into probe-set order.

The probe set itself is :mod:`.probe_set`; stored activations are :mod:`.snapshots`, and
:mod:`.budget` sizes them. Plain torch; the Lightning callbacks and ``probe.py`` build on these
functions.
"""

from ._distributed import flatten_activations, gather_in_probe_order, shard_indices, unflatten_activations
from ._layers import resolve_layers
from ._points import (
    REDUCERS,
    REPRESENTATIONS,
    SIDES,
    Activations,
    Reducer,
    register_reducer,
    to_points,
    token_width,
)
from ._projection import Projector, projection_matrix
from ._recorder import ActivationRecorder, capture_activations
from .budget import SnapshotBudget
from .probe_set import capture_probe_images, load_probe_images, round_to_dtype, select_probe_indices
from .snapshots import load_snapshot, save_snapshot, snapshot_nbytes, snapshot_path

__all__ = [
    "REDUCERS",
    "REPRESENTATIONS",
    "SIDES",
    "ActivationRecorder",
    "Activations",
    "Projector",
    "Reducer",
    "SnapshotBudget",
    "capture_activations",
    "capture_probe_images",
    "flatten_activations",
    "gather_in_probe_order",
    "load_probe_images",
    "load_snapshot",
    "projection_matrix",
    "register_reducer",
    "resolve_layers",
    "round_to_dtype",
    "save_snapshot",
    "select_probe_indices",
    "shard_indices",
    "snapshot_nbytes",
    "snapshot_path",
    "to_points",
    "token_width",
    "unflatten_activations",
]
