"""Lightning callbacks of attnconv-pl."""

from callbacks.epoch_checkpoint import EpochCheckpoint
from callbacks.epoch_metrics import EpochMetrics
from callbacks.epoch_seeding import EpochSeeding
from callbacks.feature_dynamics import FeatureDynamics
from callbacks.single_node import SingleNodeProbing
from callbacks.stiffness import StiffnessProbing

__all__ = ["EpochCheckpoint", "EpochMetrics", "EpochSeeding", "FeatureDynamics", "SingleNodeProbing",
           "StiffnessProbing"]
