"""Probe-point descriptions (``feature_info``): the helpers, and every model's description checked
against the outputs its modules actually produce on a forward pass."""

import dataclasses

import pytest
import torch

from attnconv_pl.models import (
    KINDS,
    ProbePoint,
    _registry,
    create_model,
    list_models,
    points_of_kind,
    probe_layers,
)

IMG_SIZE, IN_CHANS, NUM_CLASSES, BATCH = 32, 3, 5, 2

BRANCHES = ("residual", "shortcut", "attn", "mlp")
"""Extras keys of branches summed into their point's output, so of the output's size."""


def record_outputs(model, names):
    """Run a (BATCH, IN_CHANS, IMG_SIZE, IMG_SIZE) batch; the logits and each named module's output."""
    modules = dict(model.named_modules())
    outputs = {}
    for name in names:
        modules[name].register_forward_hook(
            lambda module, args, output, name=name: outputs.setdefault(name, output)
        )
    with torch.no_grad():
        logits = model.eval()(torch.randn(BATCH, IN_CHANS, IMG_SIZE, IMG_SIZE))
    return logits, outputs


@pytest.mark.parametrize("name", list_models())
def test_feature_info_agrees_with_the_forward_pass(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, in_chans=IN_CHANS, img_size=IMG_SIZE)
    _registry._check_feature_info(name, model)
    points = model.feature_info
    extras = [target for point in points for target in point.extras.values()]
    logits, outputs = record_outputs(model, [*probe_layers(points), *extras])
    assert set(outputs) == {*probe_layers(points), *extras}, "every point and extras target runs"
    for point in points:
        output = outputs[point.module]
        assert output.shape[0] == BATCH, point
        if point.tokens:
            assert output.ndim == 3 and output.shape[2] == point.num_chs and point.reduction is None, point
        elif point.reduction is not None:
            side = IMG_SIZE // point.reduction
            assert output.shape[1:] == (point.num_chs, side, side), point
        else:
            assert output[0].numel() == point.num_chs, point
        if point.kind == "head":
            torch.testing.assert_close(output, logits)
        for key in set(point.extras) & set(BRANCHES):
            assert outputs[point.extras[key]].shape[1:].numel() == output.shape[1:].numel(), (point, key)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("attention_net", ["stem", "mixer", "norm", "head"]),
        ("conv_net", ["stem", "mixer", "norm", "head"]),
        (
            "vit_tiny",
            ["patch_embed", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "norm"],
        ),
        (
            "resnet18",
            ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1",
             "avgpool"],
        ),
    ],
)
def test_probe_layers_are_unchanged(name, expected):
    model = create_model(name, num_classes=NUM_CLASSES, in_chans=IN_CHANS, img_size=IMG_SIZE)
    assert model.probe_layers == expected == probe_layers(model.feature_info)


def test_descriptions_of_the_model_families():
    net = create_model("attention_net", num_classes=NUM_CLASSES, img_size=IMG_SIZE)
    assert [point.kind for point in net.feature_info] == ["stem", "mixer", "norm", "head"]
    assert points_of_kind(net.feature_info, "mixer")[0].extras == {"residual": "mixer.attn"}
    conv = create_model("conv_net", num_classes=NUM_CLASSES, img_size=IMG_SIZE)
    assert points_of_kind(conv.feature_info, "mixer")[0].extras == {"residual": "mixer.conv"}
    vit = create_model("vit_mini", num_classes=NUM_CLASSES, img_size=IMG_SIZE, depth=2)
    assert points_of_kind(vit.feature_info, "block")[1].extras == {"attn": "blocks.1.attn", "mlp": "blocks.1.mlp"}
    resnet = create_model("resnet18_imagenet", num_classes=NUM_CLASSES, img_size=IMG_SIZE)
    blocks = points_of_kind(resnet.feature_info, "block")
    assert [point.reduction for point in blocks] == [4, 4, 8, 8, 16, 16, 32, 32]
    assert blocks[2].extras == {"residual": "layer2.0.bn2", "shortcut": "layer2.0.downsample"}
    assert blocks[1].extras == {"residual": "layer1.1.bn2"}
    assert probe_layers(points_of_kind(resnet.feature_info, "pool", "head")) == ["avgpool"]


def test_points_of_kind_keeps_order_and_rejects_unknown_kinds():
    points = [ProbePoint("a", "stem", 4), ProbePoint("b", "block", 4), ProbePoint("c", "head", 2)]
    assert points_of_kind(points, "head", "stem") == [points[0], points[2]]
    assert points_of_kind(points, "ff_nodes") == []
    with pytest.raises(ValueError, match=r"unknown probe point kind\(s\) \['blocks'\]; kinds are: stem, "):
        points_of_kind(points, "blocks")
    assert {"stem", "block", "mixer", "norm", "pool", "head", "mha_nodes", "ff_nodes"} == set(KINDS)


def test_probe_point_is_frozen_hashable_and_copies_its_extras():
    extras = {"residual": "a.f"}
    point = ProbePoint("a", "block", 8, 2, extras=extras)
    extras["gate"] = "a.g"
    assert point.extras == {"residual": "a.f"}
    assert point == ProbePoint("a", "block", 8, 2, extras={"residual": "a.f"})
    assert hash(point) == hash(ProbePoint("a", "block", 8, 2, extras={"residual": "a.f"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.module = "b"
