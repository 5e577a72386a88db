"""Lightning callbacks of attnconv-pl."""

from callbacks.epoch_checkpoint import EpochCheckpoint
from callbacks.feature_dynamics import FeatureDynamics

__all__ = ["EpochCheckpoint", "FeatureDynamics"]
