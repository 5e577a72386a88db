"""CIFAR ResNets (He et al. 2016, section 4.2) with optional channel attention on the residual branch.

- ``resnet20``, ``resnet56``, ``resnet110``: basic blocks (two 3x3 convolutions), n = 3, 9, 18
  blocks per stage, stages 16/32/64 wide (0.27 M, 0.85 M, 1.7 M parameters for 10 classes).
- ``resnet164``: bottleneck blocks (1x1, 3x3, 1x1; expansion 4), n = 18 per stage, outputs
  64/128/256 wide (1.7 M parameters; He et al., "Identity Mappings in Deep Residual Networks").

A 3x3 stem convolution with 16 channels, three stages (stride 2 at the start of stages 2 and 3:
an image of side s reaches stage 3 as an s/4 map), global average pooling and a linear
classifier. Blocks are post-activation, as in section 4.2: conv-BN-ReLU-...-conv-BN, then the
sum, then a ReLU. Where a block changes width or stride its shortcut is a 1x1 convolution and BN
(option B; the paper's CIFAR nets use zero-padding, option A, which adds no parameters: option B
adds 1 % to resnet20). The bias-free feature convolutions are initialised as torchvision's
ResNet (Kaiming-normal, fan-out), the gates' 1x1 convolutions keep PyTorch's default, as in timm;
nothing is downloaded. ``img_size`` is accepted for the common factory signature (the network
is size-agnostic).

Residual block t as a forward-Euler step (arXiv 2308.09939): with x_t the shortcut's output and
f_t the residual branch, block t outputs ``ReLU(x_t + a_t * f_t(x_t))``, where the step size
a_t is 1 without attention and a per-channel gate in (0, 1) with it. The ReLU after the sum is
kept from He et al.; the Euler reading is of the sum before it. (In a block that changes shape,
f_t reads the block input, not x_t: x_t is then the projected input, of f_t's output shape.)

Options (keywords of every factory):

- ``attn``: ``"none"`` (default); ``"se"``: timm's ``SEModule`` on the branch output,
  ``x_t + SE(f_t(x_t))``, the gate being SE's sigmoid of an MLP of GAP(f_t(x_t)), as in
  SE-ResNet; ``"step"``: the StepNet stand-in (not the authors' StepNet), a gate
  ``a_t = sigmoid(MLP([GAP(f_t(x_t)), GAP(x_t), GAP(|f_t(x_t)| / (|x_t| + eps))]))`` that sees
  the state and the ratio of update to state, the per-position rate. Both MLPs have width
  C / 16 rounded to a multiple of 8 and at least 8 (timm's ``make_divisible`` with its default
  divisor 8, as ``SEModule`` sizes itself): 8 hidden units at 16, 32, 64 and 128 channels, 16 at
  256. eps = :data:`STEP_EPS` = 0.1 (our choice): activations after BN and ReLU are O(1) with
  many exact zeros, where a tiny eps would make the third descriptor ~|f|/eps and saturate the
  gate at initialisation; 0.1 caps it at 10 |f|.
- ``attn_stages``: the stages (1, 2, 3) whose blocks get the gate; default all three.

Probe points (our choice): ``stem`` (stem, reduction 1), every block ``layer<s>.<i>`` (kind
``block``, reduction 1, 2, 4 for stages 1, 2, 3), ``avgpool`` (pool, (B, C, 1, 1)) and ``fc``
(head). Each block's extras name modules whose outputs are the Euler step's terms:

- ``input``: ``<block>.shortcut``, x_t: an ``nn.Identity`` on the block input, or the
  projection where the block changes shape;
- ``residual``: ``<block>.branch``, f_t(x_t), the branch output after its last BN, before any
  gate;
- ``gate``: ``<block>.attn.gate``, a_t, shape (B, C, 1, 1): the sigmoid module of the gate
  (timm's ``SEModule.gate`` is an ``nn.Sigmoid`` module, so SE needs no wrapper). Only in blocks
  with attention;
- ``shortcut``: ``<block>.shortcut``, only where it is a projection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from timm.layers import SEModule, make_divisible
from torch import nn

from ._features import ProbePoint, attach_feature_info
from ._registry import register_model

ATTENTIONS = ("none", "se", "step")
"""Values of the ``attn`` option: no gate, squeeze-and-excitation, the StepNet stand-in."""

STAGES = (1, 2, 3)
"""The stages of a CIFAR ResNet, the values ``attn_stages`` may hold."""

STEP_EPS = 0.1
"""eps of the StepNet stand-in's rate descriptor |f| / (|x| + eps), in activation units."""

REDUCTION = 16
"""Channel reduction of both gates' MLPs (C / 16 rounded to the nearest multiple of 8, at least 8)."""

STAGE_WIDTHS = (16, 32, 64)
"""Width of each stage's basic blocks, and of each bottleneck's middle layers."""

BOTTLENECK_EXPANSION = 4
"""Output width of a bottleneck block over its middle width."""


class SqueezeExcite(SEModule):
    """timm's ``SEModule`` (reduction 16, hidden width rounded by timm) with the block's gate signature.

    ``forward(x, fx)`` returns ``fx * sigmoid(MLP(GAP(fx)))``; ``x`` is ignored. The gate,
    shape (B, C, 1, 1), is the output of the submodule ``gate``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, rd_ratio=1.0 / REDUCTION)

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """x, fx: (B, C, H, W). Returns the gated update a * fx, (B, C, H, W)."""
        return super().forward(fx)


class StepGate(nn.Module):
    """The StepNet stand-in: a per-channel step size from the state, the update and their ratio.

    a = sigmoid(fc2(ReLU(fc1([GAP(fx), GAP(x), GAP(|fx| / (|x| + eps))])))), fc1: 3C -> hidden,
    fc2: hidden -> C (1x1 convolutions on (B, ., 1, 1), as in timm's ``SEModule``). The gate,
    shape (B, C, 1, 1), is the output of the submodule ``gate``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = make_divisible(channels / REDUCTION, round_limit=0.0)
        self.fc1 = nn.Conv2d(3 * channels, hidden, kernel_size=1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """x, fx: (B, C, H, W), the state and the update. Returns a * fx, (B, C, H, W)."""
        rate = fx.abs() / (x.abs() + STEP_EPS)
        descriptor = torch.cat([term.mean((2, 3), keepdim=True) for term in (fx, x, rate)], dim=1)
        return fx * self.gate(self.fc2(self.act(self.fc1(descriptor))))


GATES: dict[str, Callable[[int], nn.Module]] = {"se": SqueezeExcite, "step": StepGate}
"""Gate module of each ``attn`` value other than "none", built from the channel count."""


class ResidualBlock(nn.Module):
    """``ReLU(x_t + a_t * f_t(x))`` with x_t = ``shortcut(x)``, f_t = ``branch``, a_t from ``attn``.

    ``shortcut`` is ``nn.Identity`` when the branch keeps the shape, otherwise a 1x1 convolution
    of the branch's stride and BN. ``attn`` is None (a_t = 1) or a gate module called as
    ``attn(x_t, f_t(x))`` that returns a_t * f_t(x).
    """

    def __init__(self, branch: nn.Sequential, in_chs: int, out_chs: int, stride: int, attn: str) -> None:
        super().__init__()
        if stride == 1 and in_chs == out_chs:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_chs)
            )
        self.branch = branch
        self.attn = GATES[attn](out_chs) if attn != "none" else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_chs, H, W). Returns (B, out_chs, H / stride, W / stride)."""
        state = self.shortcut(x)
        update = self.branch(x)
        if self.attn is not None:
            update = self.attn(state, update)
        return self.relu(state + update)


def basic_branch(in_chs: int, width: int, stride: int) -> nn.Sequential:
    """conv3x3(stride)-BN-ReLU-conv3x3-BN, ``in_chs`` -> ``width`` channels."""
    return nn.Sequential(
        nn.Conv2d(in_chs, width, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
    )


def bottleneck_branch(in_chs: int, width: int, stride: int) -> nn.Sequential:
    """conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1-BN, ``in_chs`` -> 4 ``width`` channels."""
    out_chs = BOTTLENECK_EXPANSION * width
    return nn.Sequential(
        nn.Conv2d(in_chs, width, 1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, out_chs, 1, bias=False),
        nn.BatchNorm2d(out_chs),
    )


class CifarResNet(nn.Module):
    """stem (conv3x3 16, BN, ReLU), ``layer1``-``layer3`` of ``depth`` blocks, ``avgpool``, ``fc``."""

    def __init__(
        self,
        num_classes: int,
        in_chans: int,
        depth: int,
        bottleneck: bool,
        attn: str,
        attn_stages: Iterable[int],
    ) -> None:
        super().__init__()
        make_branch = bottleneck_branch if bottleneck else basic_branch
        expansion = BOTTLENECK_EXPANSION if bottleneck else 1
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, STAGE_WIDTHS[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(STAGE_WIDTHS[0]),
            nn.ReLU(),
        )
        in_chs = STAGE_WIDTHS[0]
        for stage, width in zip(STAGES, STAGE_WIDTHS):
            blocks = []
            for index in range(depth):
                stride = 2 if stage > 1 and index == 0 else 1
                block_attn = attn if stage in attn_stages else "none"
                out_chs = expansion * width
                blocks.append(ResidualBlock(make_branch(in_chs, width, stride), in_chs, out_chs, stride, block_attn))
                in_chs = out_chs
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_chs, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d) and module.bias is None:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, in_chans, H, W). Returns logits, (B, num_classes)."""
        features = self.layer3(self.layer2(self.layer1(self.stem(images))))
        return self.fc(torch.flatten(self.avgpool(features), 1))


def build_cifar_resnet(
    model_name: str,
    num_classes: int,
    in_chans: int,
    depth: int,
    bottleneck: bool,
    attn: str,
    attn_stages: Iterable[int],
) -> CifarResNet:
    """A CIFAR ResNet with ``depth`` blocks per stage and its probe points (module docstring).

    Raises:
        ValueError: ``attn`` is not one of :data:`ATTENTIONS` or ``attn_stages`` holds a value
            outside :data:`STAGES`.
    """
    if attn not in ATTENTIONS:
        raise ValueError(
            f"model '{model_name}': attn={attn!r} is not an attention of this model; "
            f"use one of {', '.join(map(repr, ATTENTIONS))}"
        )
    attn_stages = tuple(attn_stages)
    if not set(attn_stages) <= set(STAGES):
        raise ValueError(
            f"model '{model_name}': attn_stages={attn_stages!r} names stages outside {STAGES}; "
            "list the stages (1, 2, 3) whose blocks get attention"
        )
    model = CifarResNet(num_classes, in_chans, depth, bottleneck, attn, attn_stages)
    attach_feature_info(model, [
        ProbePoint("stem", "stem", STAGE_WIDTHS[0], 1),
        *_block_points(model),
        ProbePoint("avgpool", "pool", model.fc.in_features),
        ProbePoint("fc", "head", num_classes),
    ])
    return model


def _block_points(model: CifarResNet) -> list[ProbePoint]:
    """One ``block`` point per residual block, in forward order, with the Euler step's terms as extras."""
    points = []
    for stage in STAGES:
        for index, block in enumerate(getattr(model, f"layer{stage}")):
            name = f"layer{stage}.{index}"
            extras = {"input": f"{name}.shortcut", "residual": f"{name}.branch"}
            if block.attn is not None:
                extras["gate"] = f"{name}.attn.gate"
            if not isinstance(block.shortcut, nn.Identity):
                extras["shortcut"] = f"{name}.shortcut"
            width = block.branch[-1].num_features
            points.append(ProbePoint(name, "block", width, 2 ** (stage - 1), extras=extras))
    return points


@register_model
def resnet20(
    num_classes: int, in_chans: int, img_size: int, attn: str = "none", attn_stages: Iterable[int] = STAGES
) -> CifarResNet:
    """CIFAR ResNet-20: basic blocks, 3 per stage (0.27 M parameters); ``attn``: none, se or step."""
    return build_cifar_resnet("resnet20", num_classes, in_chans, 3, False, attn, attn_stages)


@register_model
def resnet56(
    num_classes: int, in_chans: int, img_size: int, attn: str = "none", attn_stages: Iterable[int] = STAGES
) -> CifarResNet:
    """CIFAR ResNet-56: basic blocks, 9 per stage (0.85 M parameters); ``attn``: none, se or step."""
    return build_cifar_resnet("resnet56", num_classes, in_chans, 9, False, attn, attn_stages)


@register_model
def resnet110(
    num_classes: int, in_chans: int, img_size: int, attn: str = "none", attn_stages: Iterable[int] = STAGES
) -> CifarResNet:
    """CIFAR ResNet-110: basic blocks, 18 per stage (1.7 M parameters); ``attn``: none, se or step."""
    return build_cifar_resnet("resnet110", num_classes, in_chans, 18, False, attn, attn_stages)


@register_model
def resnet164(
    num_classes: int, in_chans: int, img_size: int, attn: str = "none", attn_stages: Iterable[int] = STAGES
) -> CifarResNet:
    """CIFAR ResNet-164: bottleneck blocks, 18 per stage (1.7 M parameters); ``attn``: none, se or step."""
    return build_cifar_resnet("resnet164", num_classes, in_chans, 18, True, attn, attn_stages)
