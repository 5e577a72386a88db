"""Lightning callbacks of attnconv-pl."""

from callbacks._model_probing import ModelProbing, model_probing_callbacks
from callbacks.epoch_checkpoint import EpochCheckpoint
from callbacks.epoch_metrics import EpochMetrics
from callbacks.epoch_seeding import EpochSeeding
from callbacks.feature_dynamics import FeatureDynamics
from callbacks.probing_session import ProbingSessionCallback

__all__ = ["EpochCheckpoint", "EpochMetrics", "EpochSeeding", "FeatureDynamics", "ModelProbing",
           "ProbingSessionCallback", "model_probing_callbacks"]
