"""Every registered model trains on a tiny batch; the attention/conv pair is a fair match."""

import socket

import pytest
import torch
from torch import nn

from attnconv_pl.models import create_model, list_models


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Building a model must never fetch weights: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", list_models())
def test_forward_backward_reaches_every_parameter(name, in_chans):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_chans=in_chans, img_size=16)
    images = torch.randn(2, in_chans, 16, 16)
    logits = model(images)
    assert logits.shape == (2, 5)
    nn.functional.cross_entropy(logits, torch.tensor([0, 4])).backward()
    without_gradient = [
        param_name
        for param_name, param in model.named_parameters()
        if param.grad is None or not param.grad.abs().sum() > 0 or not param.grad.isfinite().all()
    ]
    assert without_gradient == []


def mixer_parameter_count(model: nn.Module) -> int:
    return sum(param.numel() for param in model.mixer.parameters())


@pytest.mark.parametrize("img_size", [16, 32])
def test_attention_and_conv_nets_match_in_parameters(img_size):
    attention = create_model("attention_net", num_classes=10, in_chans=3, img_size=img_size)
    conv = create_model("conv_net", num_classes=10, in_chans=3, img_size=img_size)
    dim, tokens = 128, 64
    norm = 2 * dim
    assert mixer_parameter_count(attention) == 4 * dim**2 + 4 * dim + tokens * dim + norm
    assert mixer_parameter_count(conv) == 9 * dim * (dim // 2) + dim + norm
    attention_total = sum(param.numel() for param in attention.parameters())
    conv_total = sum(param.numel() for param in conv.parameters())
    assert abs(attention_total - conv_total) / conv_total < 0.10
    assert attention.probe_layers == conv.probe_layers


@pytest.mark.parametrize("img_size", [16, 32])
def test_default_patch_gives_an_8_by_8_token_grid(img_size):
    images = torch.zeros(1, 1, img_size, img_size)
    with torch.no_grad():
        for name in ("attention_net", "conv_net"):
            stem = create_model(name, num_classes=3, in_chans=1, img_size=img_size).stem
            assert stem(images).shape[-2:] == (8, 8)
        vit = create_model("vit_tiny", num_classes=3, in_chans=1, img_size=img_size, depth=1)
        assert vit.patch_embed(images).shape[1] == 8 * 8


@pytest.mark.parametrize(
    ("options", "message"),
    [({"dim": 30, "num_heads": 4}, "divisible by num_heads"), ({"patch_size": 17}, "patch_size")],
)
def test_attention_net_rejects_inconsistent_sizes(options, message):
    with pytest.raises(ValueError, match=message):
        create_model("attention_net", num_classes=3, img_size=16, **options)


def positions_seen_by_corner(name: str) -> set[tuple[int, int]]:
    """Grid positions (row, column) of the mixer input that its output at (0, 0) depends on."""
    torch.manual_seed(0)
    mixer = create_model(name, num_classes=3, in_chans=3, img_size=16, dim=16).mixer
    grid = torch.randn(1, 16, 8, 8, requires_grad=True)
    output = mixer(grid)
    assert isinstance(output, torch.Tensor) and output.shape == grid.shape
    output[:, :, 0, 0].sum().backward()
    sensitivity = grid.grad.abs().sum(dim=(0, 1))
    return {tuple(position) for position in sensitivity.nonzero().tolist()}


def test_attention_mixes_all_tokens_and_conv_only_a_3x3_neighbourhood():
    assert positions_seen_by_corner("attention_net") == {(row, col) for row in range(8) for col in range(8)}
    assert positions_seen_by_corner("conv_net") == {(0, 0), (0, 1), (1, 0), (1, 1)}


@pytest.mark.parametrize(("name", "layer4_side"), [("resnet18", 4), ("resnet18_imagenet", 1)])
def test_resnet_stem_sets_the_final_feature_map_size(name, layer4_side):
    model = create_model(name, num_classes=3, in_chans=3, img_size=32).eval()
    shapes = []
    model.layer4.register_forward_hook(lambda module, args, output: shapes.append(output.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert shapes == [(1, 512, layer4_side, layer4_side)]
