"""Probes of layer activations: pure functions, point clouds (n, d) in, numbers out.

Conventions (see each docstring): distances are Euclidean; Wasserstein distances are W_p,
not W_p^p; degenerate but legitimate activations give a documented value (0.0 or NaN with a
:class:`DegenerateInputWarning`), never an exception; malformed input raises ValueError.
"""

from ._checks import DegenerateInputWarning
from .intrinsic_dim import intrinsic_dimension, intrinsic_dimensions
from .lipschitz import lipschitz_ratios
from .topology import diagram_distance, persistence_diagrams
from .variance import participation_ratio, total_variance
from .wasserstein import paired_displacement, wasserstein

__all__ = [
    "DegenerateInputWarning",
    "diagram_distance",
    "intrinsic_dimension",
    "intrinsic_dimensions",
    "lipschitz_ratios",
    "paired_displacement",
    "participation_ratio",
    "persistence_diagrams",
    "total_variance",
    "wasserstein",
]
