"""Models outside the registry: any timm model as ``timm:NAME`` (probe points from timm's own
feature info, never any download) and your own by import path ``module:Name``."""

import pytest
import timm
import torch
from external_nets import TinyConvNet
from safetensors.torch import save_file

from attnconv_pl.analyses.dynamics import Dynamics, DynamicsSettings
from attnconv_pl.errors import ConfigError
from attnconv_pl.models import create_model, points_of_kind
from attnconv_pl.models._options import UnknownOptionError
from attnconv_pl.module import ClassifierModule
from callbacks import FeatureDynamics

TINY_VIT = {"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}
"""Options that make timm's vit_tiny_patch16_224 a 27k-parameter ViT for 16 px digits."""


def test_a_timm_resnet_has_timms_stages_as_probe_points_with_timms_widths_and_reductions():
    model = create_model("timm:resnet10t", num_classes=7, in_chans=1, img_size=64)
    reference = timm.create_model("resnet10t", pretrained=False, num_classes=7, in_chans=1).feature_info
    stages = [point for point in model.feature_info if point.kind != "head"]
    assert [point.module for point in stages] == [entry["module"] for entry in reference]
    assert [point.num_chs for point in stages] == [entry["num_chs"] for entry in reference]
    assert [point.reduction for point in stages] == [entry["reduction"] for entry in reference]
    assert [point.kind for point in stages] == ["stem", "block", "block", "block", "block"]
    head, = points_of_kind(model.feature_info, "head")
    assert (head.module, head.num_chs) == ("fc", 7)
    assert model.probe_layers == [point.module for point in model.feature_info]
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 7)


def test_a_timm_vit_takes_the_image_size_and_its_blocks_are_token_sequences():
    model = create_model("timm:vit_tiny_patch16_224", num_classes=10, in_chans=1, img_size=16, **TINY_VIT)
    assert model.patch_embed.img_size == (16, 16)
    blocks = points_of_kind(model.feature_info, "block")
    assert [point.module for point in blocks] == ["blocks.0", "blocks.1"]
    assert all(point.tokens and point.num_chs == 32 and point.reduction is None for point in blocks)
    assert model(torch.zeros(3, 1, 16, 16)).shape == (3, 10)


def test_a_timm_model_loads_a_local_weights_file_and_never_pretrained_weights(tmp_path):
    source = create_model("timm:vit_tiny_patch16_224", num_classes=10, in_chans=1, img_size=16, **TINY_VIT)
    save_file(source.state_dict(), tmp_path / "vit.safetensors")
    torch.save(source.state_dict(), tmp_path / "vit.pth")
    for name in ("vit.safetensors", "vit.pth"):
        loaded = create_model("timm:vit_tiny_patch16_224", num_classes=10, in_chans=1, img_size=16,
                              checkpoint_path=str(tmp_path / name), **TINY_VIT)
        for key, tensor in source.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], tensor), (name, key)
    with pytest.raises(ConfigError, match="checkpoint_path .*missing.pth is not a file"):
        create_model("timm:resnet10t", checkpoint_path=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="pretrained are not accepted"):
        create_model("timm:resnet10t", pretrained=True)


@pytest.mark.parametrize(("name", "message"), [
    ("timm:resnet10", "timm has no model 'resnet10'.*Did you mean resnet10t"),
    ("timm:hf-hub:someone/model", "hub names are not accepted"),
    ("no_such_package.nets:Net", "no module 'no_such_package.nets' can be imported; install its package"),
    ("external_nets:TinyConvNett", "external_nets has no attribute 'TinyConvNett'; did you mean TinyConvNet"),
    ("external_nets:NOT_A_MODEL", "is a int, not a class or function"),
    ("external_nets", "unknown model 'external_nets'.*timm:NAME.*package.module:Name"),
    ("external_nets:", "an import path is package.module:Name"),
])
def test_an_unresolvable_name_says_what_to_do(name, message):
    with pytest.raises(ConfigError, match=message):
        create_model(name, num_classes=10, in_chans=1, img_size=16)


def test_an_imported_class_gets_the_shape_arguments_it_names_and_its_options():
    model = create_model("external_nets:TinyConvNet", num_classes=5, in_chans=3, img_size=16, width=6)
    assert isinstance(model, TinyConvNet)
    assert (model.conv1.in_channels, model.width, model.head.out_features) == (3, 6, 5)
    assert model.probe_layers == ["conv1", "conv2", "head"]
    conv1, conv2, head = model.feature_info
    assert (conv1.num_chs, conv1.reduction, conv2.reduction, head.num_chs) == (6, 1, 2, 5)


def test_an_imported_function_receives_only_the_shape_arguments_it_names():
    # in_chans reaching **options would give TinyConvNet in_chans twice (a TypeError)
    model = create_model("external_nets:tiny_conv_net", num_classes=4, in_chans=2, img_size=16, channels=2)
    assert (model.conv1.in_channels, model.head.out_features) == (2, 4)


def test_a_model_that_does_not_run_on_the_data_is_refused_when_built():
    with pytest.raises(ConfigError, match="does not run on 3x16x16 images .*expected input.*to have 2 channels"):
        create_model("external_nets:tiny_conv_net", num_classes=4, in_chans=3, img_size=16, channels=2)


def test_options_an_imported_model_does_not_take_are_named_with_the_closest_and_all_its_options():
    with pytest.raises(UnknownOptionError, match=r"'external_nets:TinyConvNet' got unknown option\(s\) 'depth', "
                       r"'widht' \(did you mean 'width'\?\); its options are: width\.") as error:
        create_model("external_nets:TinyConvNet", num_classes=5, in_chans=1, img_size=16, depth=3, widht=4, width=2)
    assert error.value.kept == {"width": 2}


def test_options_a_factory_with_any_keyword_rejects_are_all_named():
    # tiny_conv_net(**options) forwards them to TinyConvNet, which takes only width
    with pytest.raises(UnknownOptionError, match=r"got unknown option\(s\) 'depth', 'dim'"):
        create_model("external_nets:tiny_conv_net", num_classes=5, in_chans=1, img_size=16, dim=3, depth=2)


def test_options_a_timm_model_does_not_take_are_all_named_and_the_others_kept():
    with pytest.raises(UnknownOptionError, match=r"'timm:resnet10t' got unknown option\(s\) 'depth', 'dim'") as error:
        create_model("timm:resnet10t", num_classes=5, in_chans=1, img_size=16, dim=64, depth=2, drop_rate=0.1)
    assert error.value.kept == {"drop_rate": 0.1}


def test_a_model_without_probe_layers_is_built_but_probing_it_asks_for_layers():
    module = ClassifierModule(arch="external_nets:UndescribedNet", num_classes=10, in_chans=1, image_size=8)
    assert module.model.linear.in_features == 64
    assert not hasattr(module.model, "probe_layers")
    with pytest.raises(ConfigError, match="declares no probe_layers.*--dynamics.layers"):
        FeatureDynamics().probed_layers(module)
    assert FeatureDynamics(layers=["linear"]).probed_layers(module) == ["linear"]


def test_timm_probe_points_are_probed_through_the_dynamics_analysis():
    model = create_model("timm:resnet10t", num_classes=10, in_chans=1, img_size=16)
    assert Dynamics.for_model(DynamicsSettings(), model).layers == model.probe_layers
