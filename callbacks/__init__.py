"""Lightning callbacks of attnconv-pl."""

from callbacks._model_probing import ModelProbing, model_probing_callback, model_probing_callbacks
from callbacks.epoch_checkpoint import EpochCheckpoint
from callbacks.epoch_metrics import EpochMetrics
from callbacks.epoch_seeding import EpochSeeding
from callbacks.feature_dynamics import FeatureDynamics
from callbacks.probing_session import ProbingSessionCallback

SingleNodeProbing = model_probing_callback("single_node")
StiffnessProbing = model_probing_callback("stiffness")
"""The training callbacks of the single-node and stiffness analyses, by the names they had as classes."""

__all__ = ["EpochCheckpoint", "EpochMetrics", "EpochSeeding", "FeatureDynamics", "ModelProbing",
           "ProbingSessionCallback", "SingleNodeProbing", "StiffnessProbing", "model_probing_callbacks"]
