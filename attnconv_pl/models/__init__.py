"""Image classifiers built by name: ``create_model(name, num_classes=, in_chans=, img_size=, **kw)``.

Importing this package registers every model; ``list_models()`` names them. Each built model
has ``probe_layers``, the ordered names of its layers worth probing.
"""

from . import attention_conv, resnet, vit
from ._registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
