"""The feature-dynamics analysis: snapshots of a probe set in, rows of ``dynamics.csv`` out.

Both ``callbacks.FeatureDynamics`` (during training) and ``probe.py`` (on checkpoints) compute
their numbers here, with settings from one dataclass (:class:`DynamicsSettings`), so a number
logged live and one recomputed later from the checkpoint are equal by construction. Every
number comes from ``attnconv_pl.probes``; this module only decides what is compared with what,
names the results and declares their families (:data:`Dynamics.families`).

A *snapshot* is ``{layer: {"output": Tensor (N, d_out), "input": Tensor (N, d_in)}}`` (``input``
optional) for the N inputs of the probe set, in probe-set order.

The code is split by job: :mod:`.settings` (what to compute), :mod:`.metrics` (the numbers of one
layer), :mod:`.runner` (one epoch over every layer), :mod:`.analysis` (the analysis across epochs).
"""

from attnconv_pl.analyses.dynamics.analysis import Dynamics
from attnconv_pl.analyses.dynamics.settings import DynamicsSettings

__all__ = ["Dynamics", "DynamicsSettings"]
