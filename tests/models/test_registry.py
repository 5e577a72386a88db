"""The model registry: lookup by name, name patterns, option checking, the probe-point check."""

import pytest
import torch
from torch import nn

from attnconv_pl.errors import ConfigError
from attnconv_pl.models import (
    ProbePoint,
    _registry,
    attach_feature_info,
    create_model,
    list_models,
    register_model,
)

ALL_MODELS = [
    "attention_net",
    "conv_net",
    "resnet18",
    "resnet18_imagenet",
    "resnet34",
    "resnet34_imagenet",
    "vit_mini",
    "vit_small",
    "vit_tiny",
]


@pytest.fixture
def scratch_registry(monkeypatch):
    """Let a test register throw-away models without leaking them into the real registry."""
    monkeypatch.setattr(_registry, "_MODEL_FACTORIES", dict(_registry._MODEL_FACTORIES))


def test_list_models_default_is_every_model_sorted():
    names = list_models()
    assert names == sorted(names)
    assert set(ALL_MODELS) <= set(names)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*vit*", ["vit_mini", "vit_small", "vit_tiny"]),
        ("resnet*_imagenet", ["resnet18_imagenet", "resnet34_imagenet"]),
        ("*_net", ["attention_net", "conv_net"]),
        ("no_such_model*", []),
    ],
)
def test_list_models_filters_by_fnmatch_pattern(pattern, expected):
    assert list_models(pattern) == expected


def test_unknown_name_lists_known_models_and_close_matches():
    with pytest.raises(ValueError, match="unknown model 'resnet81'") as error:
        create_model("resnet81")
    message = str(error.value)
    assert "Did you mean 'resnet18'" in message
    for name in list_models():
        assert name in message


@pytest.mark.parametrize("name", ["conv_net", "vit_tiny", "resnet18"])
def test_unknown_option_is_a_type_error_naming_the_model(name):
    with pytest.raises(TypeError, match=rf"model '{name}' got unknown option\(s\) 'dpeth'"):
        create_model(name, num_classes=3, img_size=16, dpeth=2)


def test_an_unknown_option_is_also_a_config_error_with_the_closest_option_and_the_others_kept():
    expected = r"'conv_net' got unknown option\(s\) 'dimm' \(did you mean 'dim'\?\)"
    with pytest.raises(ConfigError, match=expected) as error:
        create_model("conv_net", num_classes=3, img_size=16, dimm=32, groups=4)
    assert error.value.kept == {"groups": 4}


def test_options_reach_the_model():
    vit = create_model("vit_tiny", num_classes=3, img_size=16, depth=2, embed_dim=48, num_heads=2)
    assert len(vit.blocks) == 2 and vit.embed_dim == 48
    assert vit.probe_layers == ["patch_embed", "blocks.0", "blocks.1", "norm"]
    conv = create_model("conv_net", num_classes=3, img_size=16, dim=32, groups=4)
    assert conv.stem.out_channels == 32 and conv.mixer.conv.groups == 4


def test_register_model_uses_the_function_name(scratch_registry):
    @register_model
    def tiny_linear(num_classes, in_chans, img_size):
        model = nn.Sequential(nn.Flatten(), nn.Linear(in_chans * img_size**2, num_classes))
        attach_feature_info(model, [ProbePoint("1", "head", num_classes)])
        return model

    assert "tiny_linear" in list_models()
    model = create_model("tiny_linear", num_classes=4, in_chans=1, img_size=8)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 4)


def test_register_model_refuses_a_second_factory_with_the_same_name(scratch_registry):
    def conv_net(num_classes, in_chans, img_size):
        return nn.Identity()

    with pytest.raises(ValueError, match="'conv_net' is already registered"):
        register_model(conv_net)


def register_tiny_described(describe):
    """Register ``tiny_described``: Flatten then Linear (modules "0", "1"), described by ``describe``."""

    @register_model
    def tiny_described(num_classes, in_chans, img_size):
        model = nn.Sequential(nn.Flatten(), nn.Linear(in_chans * img_size**2, num_classes))
        describe(model)
        return model


@pytest.mark.parametrize(
    ("points", "message"),
    [
        (
            [ProbePoint("1", "head", 3), ProbePoint("blocks.0", "block", 3)],
            r"lists probe points \['blocks.0'\] that are not modules of the model",
        ),
        ([ProbePoint("1", "layer", 3)], r"has probe points of unknown kind \(1: 'layer'\); kinds are: stem, block, "),
        (
            [ProbePoint("1", "block", 3, extras={"residual": "1.conv2"})],
            r"has probe point extras that are not modules of the model \(1: residual='1.conv2'\)",
        ),
    ],
    ids=["unknown-module", "unknown-kind", "bad-extras-target"],
)
def test_create_model_rejects_a_wrong_description(scratch_registry, points, message):
    register_tiny_described(lambda model: attach_feature_info(model, points))
    with pytest.raises(ValueError, match=rf"model 'tiny_described' {message}"):
        create_model("tiny_described", num_classes=3, in_chans=1, img_size=2)


def set_attributes(**attributes):
    return lambda model: [setattr(model, key, value) for key, value in attributes.items()]


@pytest.mark.parametrize(
    ("describe", "error", "message"),
    [
        (set_attributes(probe_layers=["1"]), TypeError, "without a non-empty list `feature_info`"),
        (set_attributes(feature_info=[], probe_layers=[]), TypeError, "without a non-empty list `feature_info`"),
        (
            set_attributes(feature_info=[{"module": "1", "num_chs": 3}], probe_layers=["1"]),
            TypeError,
            "entries .* that are not ProbePoints",
        ),
        (
            set_attributes(feature_info=[ProbePoint("0", "stem", 4), ProbePoint("1", "head", 3)], probe_layers=["1"]),
            ValueError,
            r"has probe_layers \['1'\] but its feature_info lists \['0', '1'\]",
        ),
    ],
    ids=["no-feature-info", "empty", "not-probe-points", "probe-layers-not-derived"],
)
def test_create_model_rejects_a_missing_or_inconsistent_description(scratch_registry, describe, error, message):
    register_tiny_described(describe)
    with pytest.raises(error, match=message) as raised:
        create_model("tiny_described", num_classes=3, in_chans=1, img_size=2)
    assert "model 'tiny_described'" in str(raised.value)


@pytest.mark.parametrize("name", list_models())
def test_probe_layers_are_modules_that_run_once_each_in_forward_order(name):
    model = create_model(name, num_classes=3, in_chans=3, img_size=16)
    modules = dict(model.named_modules())
    assert set(model.probe_layers) <= set(modules)
    called = []
    for layer in model.probe_layers:
        modules[layer].register_forward_hook(lambda module, args, output, layer=layer: called.append(layer))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 16, 16))
    assert called == model.probe_layers


@pytest.mark.parametrize(
    ("name", "blocks_per_stage"),
    [("resnet18", [2, 2, 2, 2]), ("resnet34_imagenet", [3, 4, 6, 3])],
)
def test_resnet_probe_layers_are_every_residual_block_then_avgpool(name, blocks_per_stage):
    model = create_model(name, num_classes=3, img_size=16)
    expected = [
        f"layer{stage}.{index}"
        for stage, count in enumerate(blocks_per_stage, start=1)
        for index in range(count)
    ]
    assert model.probe_layers == [*expected, "avgpool"]
