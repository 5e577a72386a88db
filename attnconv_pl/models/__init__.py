"""Image classifiers built by name: ``create_model(name, num_classes=, in_chans=, img_size=, **kw)``.

Importing this package registers every model; ``list_models()`` names them. Each built model
has ``feature_info``, its probe points (:class:`ProbePoint`: module, kind, width, reduction,
tokens, extras) in forward order, and ``probe_layers``, their module names.

``create_model("timm:NAME", ...)`` builds any timm model without weights and
``create_model("package.module:Name", ...)`` your own class (:mod:`.external`).
"""

from . import attention_conv, cct, cifar_resnet, resnet, vit  # noqa: F401  (importing them registers their networks)
from ._features import KINDS, ProbePoint, attach_feature_info, points_of_kind, probe_layers
from ._registry import create_model, list_models, register_model

__all__ = [
    "KINDS",
    "ProbePoint",
    "attach_feature_info",
    "create_model",
    "list_models",
    "points_of_kind",
    "probe_layers",
    "register_model",
]
