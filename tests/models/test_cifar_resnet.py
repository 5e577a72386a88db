"""CIFAR ResNets: sizes against He et al., shapes, the Euler step's hook points, attention placement."""

import pytest
import torch
from torch import nn

from attnconv_pl.models import _registry, create_model, points_of_kind

PAPER_PARAMETERS = {"resnet20": 0.27e6, "resnet56": 0.85e6, "resnet110": 1.7e6, "resnet164": 1.7e6}
"""Parameter counts for CIFAR-10 in He et al. (2016, table 6; ResNet-164: "Identity Mappings", table 3)."""

BLOCKS_PER_STAGE = {"resnet20": 3, "resnet56": 9, "resnet110": 18, "resnet164": 18}


def parameter_count(model: nn.Module) -> int:
    return sum(param.numel() for param in model.parameters())


@pytest.mark.parametrize("name", PAPER_PARAMETERS)
def test_parameter_counts_match_the_paper(name):
    model = create_model(name, num_classes=10)
    assert parameter_count(model) == pytest.approx(PAPER_PARAMETERS[name], rel=0.03)


@pytest.mark.parametrize("attn", ["se", "step"])
def test_gates_add_parameters_only_where_asked(attn):
    plain = parameter_count(create_model("resnet20", attn="none"))
    everywhere = parameter_count(create_model("resnet20", attn=attn))
    last_stage = parameter_count(create_model("resnet20", attn=attn, attn_stages=[3]))
    assert plain < last_stage < everywhere
    assert parameter_count(create_model("resnet20", attn=attn, attn_stages=[])) == plain


@pytest.mark.parametrize(
    ("name", "width", "img_size"), [("resnet20", 64, 16), ("resnet20", 64, 32), ("resnet164", 256, 16)]
)
def test_output_and_stage_shapes(name, width, img_size):
    model = create_model(name, num_classes=7, in_chans=1, img_size=img_size).eval()
    shapes = {}
    for stage in ("layer1", "layer2", "layer3"):
        getattr(model, stage).register_forward_hook(
            lambda module, args, output, stage=stage: shapes.update({stage: output.shape})
        )
    with torch.no_grad():
        logits = model(torch.randn(2, 1, img_size, img_size))
    assert logits.shape == (2, 7)
    expansion = width // 64
    assert shapes == {
        "layer1": (2, 16 * expansion, img_size, img_size),
        "layer2": (2, 32 * expansion, img_size // 2, img_size // 2),
        "layer3": (2, width, img_size // 4, img_size // 4),
    }


def block_terms(model: nn.Module, images: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    """Each block point's output and its extras' outputs on ``images``, captured by forward hooks."""
    modules = dict(model.named_modules())
    captured: dict[str, dict[str, torch.Tensor]] = {}
    for point in points_of_kind(model.feature_info, "block"):
        for key, target in {"output": point.module, **point.extras}.items():
            modules[target].register_forward_hook(
                lambda module, args, output, block=point.module, key=key: captured.setdefault(block, {}).update(
                    {key: output}
                )
            )
    with torch.no_grad():
        model(images)
    return captured


@pytest.mark.parametrize(
    ("name", "attn"), [("resnet20", "none"), ("resnet20", "se"), ("resnet20", "step"), ("resnet164", "step")]
)
def test_block_output_is_the_euler_step_of_its_hooks(name, attn):
    torch.manual_seed(0)
    model = create_model(name, attn=attn, img_size=16).eval()
    terms = block_terms(model, torch.randn(2, 3, 16, 16))
    assert len(terms) == 3 * BLOCKS_PER_STAGE[name]
    for block, term in terms.items():
        gate = term.get("gate", torch.ones(()))
        if attn == "none":
            assert "gate" not in term
        else:
            assert gate.shape == (2, term["residual"].shape[1], 1, 1) and ((gate >= 0) & (gate <= 1)).all()
        assert term["input"].shape == term["residual"].shape == term["output"].shape
        torch.testing.assert_close(term["output"], torch.relu(term["input"] + gate * term["residual"]), msg=block)


def test_the_shortcut_is_the_input_hook_and_is_named_only_where_it_projects():
    model = create_model("resnet20", img_size=16)
    blocks = points_of_kind(model.feature_info, "block")
    projecting = [point.module for point in blocks if "shortcut" in point.extras]
    assert projecting == ["layer2.0", "layer3.0"]
    for point in blocks:
        assert point.extras["input"] == f"{point.module}.shortcut"
        assert point.extras["residual"] == f"{point.module}.branch"
    assert [point.reduction for point in blocks] == [1] * 3 + [2] * 3 + [4] * 3
    assert [point.kind for point in model.feature_info] == ["stem", *["block"] * 9, "pool", "head"]


@pytest.mark.parametrize("attn", ["se", "step"])
def test_attn_stages_restricts_where_gates_exist(attn):
    model = create_model("resnet20", attn=attn, attn_stages=(1, 3), img_size=16)
    gated = [point.module for point in points_of_kind(model.feature_info, "block") if "gate" in point.extras]
    assert gated == ["layer1.0", "layer1.1", "layer1.2", "layer3.0", "layer3.1", "layer3.2"]
    assert all(model.get_submodule(f"layer2.{index}").attn is None for index in range(3))
    _registry._check_feature_info("resnet20", model)


@pytest.mark.parametrize(
    ("name", "block", "channels", "hidden"),
    [("resnet20", "layer1.0", 16, 8), ("resnet20", "layer3.0", 64, 8), ("resnet164", "layer3.0", 256, 16)],
)
@pytest.mark.parametrize("attn", ["se", "step"])
def test_gate_hidden_width_is_timms_rounding_of_channels_over_16(attn, name, block, channels, hidden):
    gate = create_model(name, attn=attn, img_size=16).get_submodule(f"{block}.attn")
    assert (gate.fc1.out_channels, gate.fc2.out_channels) == (hidden, channels)


@pytest.mark.parametrize("attn", ["se", "step"])
def test_every_gate_parameter_gets_a_gradient(attn):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=5, attn=attn, img_size=16)
    nn.functional.cross_entropy(model(torch.randn(2, 3, 16, 16)), torch.tensor([0, 4])).backward()
    assert [name for name, param in model.named_parameters() if not param.grad.abs().sum() > 0] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"attn": "cbam"}, r"attn='cbam' is not an attention of this model; use one of 'none', 'se', 'step'"),
        ({"attn": "se", "attn_stages": [0, 4]}, r"attn_stages=\(0, 4\) names stages outside \(1, 2, 3\)"),
    ],
)
def test_bad_attention_options_are_named(options, message):
    with pytest.raises(ValueError, match=rf"model 'resnet56': {message}"):
        create_model("resnet56", **options)
