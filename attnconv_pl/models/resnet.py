"""torchvision ResNet-18/34, with the CIFAR stem or the standard ImageNet stem.

- ``resnet18``, ``resnet34``: CIFAR stem, ``conv1`` = 3x3 stride 1 and no max-pool, so a 32 px
  image reaches ``layer4`` as a 4 x 4 map.
- ``resnet18_imagenet``, ``resnet34_imagenet``: torchvision's stem (7x7 stride 2 + max-pool).

``in_chans`` other than 3 replaces ``conv1``; a replaced ``conv1`` is initialised as torchvision
initialises its convolutions. ``img_size`` is accepted for the common factory signature; the
network is size-agnostic (adaptive average pooling). Weights are never downloaded.

Probe points (our choice): every residual block in forward order (``layer1.0``, ...,
``layer4.1``: 8 blocks for ResNet-18, 16 for ResNet-34; kind ``block``, reduction 1, 2, 4, 8 per
stage with the CIFAR stem, 4, 8, 16, 32 with the ImageNet stem), then ``avgpool`` (kind
``pool``: the pooled 512-wide features, (B, 512, 1, 1), that the classifier ``fc`` reads).
A block's extras: ``residual`` = ``bn2``, the branch f(x) before it is added to the skip path
and the final ReLU; ``shortcut`` = ``downsample``, only in blocks that change width or stride.

Other keyword options are those of torchvision's ``ResNet`` (``zero_init_residual``,
``width_per_group``, ``norm_layer``, ...).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn
from torchvision.models import ResNet
from torchvision.models import resnet18 as tv_resnet18
from torchvision.models import resnet34 as tv_resnet34

from ._features import ProbePoint, attach_feature_info
from ._registry import register_model, reject_unknown_kwargs

_RESNET_OPTIONS = [
    name
    for name in inspect.signature(ResNet.__init__).parameters
    if name not in ("self", "block", "layers", "num_classes")
]


def build_resnet(
    model_name: str,
    torchvision_builder: Callable[..., ResNet],
    num_classes: int,
    in_chans: int,
    cifar_stem: bool,
    options: dict[str, Any],
) -> ResNet:
    """A randomly initialised torchvision ResNet with the chosen stem and its probe layers.

    Raises:
        TypeError: an option is not a torchvision ``ResNet`` option.
    """
    reject_unknown_kwargs(model_name, options, _RESNET_OPTIONS)
    model = torchvision_builder(weights=None, num_classes=num_classes, **options)
    if cifar_stem:
        model.conv1 = _stem_conv(in_chans, model.conv1.out_channels, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()
    elif in_chans != 3:
        model.conv1 = _stem_conv(in_chans, model.conv1.out_channels, kernel_size=7, stride=2, padding=3)
    attach_feature_info(model, [
        *_block_points(model, stem_reduction=1 if cifar_stem else 4),
        ProbePoint("avgpool", "pool", model.fc.in_features),
    ])
    return model


def _block_points(model: ResNet, stem_reduction: int) -> list[ProbePoint]:
    """One ``block`` point per residual block, in forward order, with its branches as extras."""
    points = []
    reduction = stem_reduction
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for index, block in enumerate(getattr(model, stage)):
            name = f"{stage}.{index}"
            reduction *= block.conv1.stride[0]
            extras = {"residual": f"{name}.bn2"}
            if block.downsample is not None:
                extras["shortcut"] = f"{name}.downsample"
            points.append(ProbePoint(name, "block", block.conv2.out_channels, reduction, extras=extras))
    return points


def _stem_conv(in_chans: int, out_chans: int, kernel_size: int, stride: int, padding: int) -> nn.Conv2d:
    """A bias-free stem convolution, Kaiming-normal (fan-out, ReLU) initialised as in torchvision."""
    conv = nn.Conv2d(in_chans, out_chans, kernel_size, stride=stride, padding=padding, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


@register_model
def resnet18(num_classes: int, in_chans: int, img_size: int, **options: Any) -> ResNet:
    """ResNet-18 with the CIFAR stem (3x3 stride-1 conv1, no max-pool)."""
    return build_resnet("resnet18", tv_resnet18, num_classes, in_chans, True, options)


@register_model
def resnet34(num_classes: int, in_chans: int, img_size: int, **options: Any) -> ResNet:
    """ResNet-34 with the CIFAR stem (3x3 stride-1 conv1, no max-pool)."""
    return build_resnet("resnet34", tv_resnet34, num_classes, in_chans, True, options)


@register_model
def resnet18_imagenet(num_classes: int, in_chans: int, img_size: int, **options: Any) -> ResNet:
    """ResNet-18 with torchvision's ImageNet stem (7x7 stride-2 conv1 and max-pool)."""
    return build_resnet("resnet18_imagenet", tv_resnet18, num_classes, in_chans, False, options)


@register_model
def resnet34_imagenet(num_classes: int, in_chans: int, img_size: int, **options: Any) -> ResNet:
    """ResNet-34 with torchvision's ImageNet stem (7x7 stride-2 conv1 and max-pool)."""
    return build_resnet("resnet34_imagenet", tv_resnet34, num_classes, in_chans, False, options)
