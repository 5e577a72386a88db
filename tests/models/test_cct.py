"""Compact convolutional transformers: sizes, the single-node hook points, options."""

import copy

import pytest
import torch
from torch import nn

from attnconv_pl.models import _registry, create_model, points_of_kind
from attnconv_pl.models.cct import HeadNodes
from attnconv_pl.models.metric_attention import MetricAttention


def build(name="cct_2_3x1_16", img_size=16, in_chans=1, **options):
    torch.manual_seed(0)
    return create_model(name, num_classes=10, in_chans=in_chans, img_size=img_size, **options).eval()


def record(model, names, images):
    """The logits and the (first) input and output of each named module on ``images``."""
    modules = dict(model.named_modules())
    seen = {}

    def keep(name):
        def hook(module, args, output):
            seen.setdefault(name, (args[0], output))
        return hook

    for name in names:
        modules[name].register_forward_hook(keep(name))
    with torch.no_grad():
        return model(images), seen


@pytest.mark.parametrize(
    ("name", "img_size", "tokens"),
    [("cct_7_3x1_32", 32, 256), ("cct_7_7x2_224", 224, 196), ("cct_2_3x1_16", 16, 64)],
)
def test_token_counts_and_output_shapes(name, img_size, tokens):
    model = build(name, img_size, in_chans=3)
    width = model.embed_dim
    logits, seen = record(model, ["tokenizer", "blocks.0", "pool"], torch.randn(2, 3, img_size, img_size))
    assert model.pos_embed.shape == (1, tokens, width)
    assert seen["tokenizer"][1].shape == seen["blocks.0"][1].shape == (2, tokens, width)
    assert seen["pool"][1].shape == (2, width)
    assert logits.shape == (2, 10)


def test_public_cct_sizes():
    cifar = create_model("cct_7_3x1_32", num_classes=10, in_chans=3, img_size=32)
    count = sum(param.numel() for param in cifar.parameters())
    assert abs(count - 3.76e6) / 3.76e6 < 0.01, count  # paper, CCT-7/3x1 on CIFAR-10: 3.76 M
    assert (len(cifar.blocks), cifar.embed_dim, cifar.num_heads) == (7, 256, 4)
    assert cifar.blocks[0].mlp.fc1.out_features == 512
    flowers = create_model("cct_7_7x2_224", num_classes=102, in_chans=3, img_size=224)
    convs = [module for module in flowers.tokenizer.modules() if isinstance(module, nn.Conv2d)]
    assert [(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding) for conv in convs] == [
        (3, 64, (7, 7), (2, 2), (3, 3)),
        (64, 256, (7, 7), (2, 2), (3, 3)),
    ]


def test_mha_nodes_are_the_concatenated_heads_before_proj():
    model = build()
    attn = model.blocks[1].attn
    images = torch.randn(3, 1, 16, 16)
    _, seen = record(model, ["blocks.1.attn", "blocks.1.attn.nodes"], images)
    x, attn_out = seen["blocks.1.attn"]
    nodes = seen["blocks.1.attn.nodes"][1]
    assert isinstance(attn.nodes, HeadNodes) and attn.nodes.num_heads == 2
    torch.testing.assert_close(attn.proj(nodes), attn_out)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    width = x.shape[-1] // 2
    for head in range(2):
        part = slice(head * width, (head + 1) * width)
        weights = (q[..., part] @ k[..., part].transpose(1, 2) / width**0.5).softmax(-1)
        torch.testing.assert_close(nodes[..., part], weights @ v[..., part])


def test_ff_nodes_are_the_mlp_output_before_the_residual_sum():
    model = build()
    block = model.blocks[0]
    _, seen = record(model, ["blocks.0", "blocks.0.attn", "blocks.0.mlp.fc2"], torch.randn(2, 1, 16, 16))
    block_in, block_out = seen["blocks.0"]
    after_attention = block.norm1(block_in + seen["blocks.0.attn"][1])
    torch.testing.assert_close(block_out, after_attention + seen["blocks.0.mlp.fc2"][1])


def test_feature_info_lists_the_single_node_points_in_forward_order():
    model = build(depth=2)
    _registry._check_feature_info("cct_2_3x1_16", model)
    assert model.probe_layers == [
        "tokenizer",
        "blocks.0.attn.nodes", "blocks.0.mlp.fc2", "blocks.0",
        "blocks.1.attn.nodes", "blocks.1.mlp.fc2", "blocks.1",
        "norm", "pool", "head",
    ]
    order = []
    for name in model.probe_layers:
        model.get_submodule(name).register_forward_hook(lambda *args, name=name: order.append(name))
    with torch.no_grad():
        model(torch.randn(1, 1, 16, 16))
    assert order == model.probe_layers
    mha = points_of_kind(model.feature_info, "mha_nodes")
    assert [model.get_submodule(point.module).num_heads for point in mha] == [2, 2]
    assert all(point.num_chs == 64 and point.tokens for point in points_of_kind(model.feature_info, "ff_nodes"))
    assert points_of_kind(model.feature_info, "block")[1].extras == {"attn": "blocks.1.attn", "mlp": "blocks.1.mlp"}


def test_metric_attention_keeps_the_nodes_and_dot_changes_nothing():
    images = torch.randn(2, 1, 16, 16)
    plain = build()
    dot = build(score="dot")
    with torch.no_grad():
        torch.testing.assert_close(dot(images), plain(images))
    metric = build(score="shared_metric", tau=2.0)
    assert all(isinstance(block.attn, MetricAttention) for block in metric.blocks)
    _, seen = record(metric, ["blocks.0.attn", "blocks.0.attn.nodes"], images)
    attn = metric.blocks[0].attn
    torch.testing.assert_close(attn.proj(seen["blocks.0.attn.nodes"][1]), seen["blocks.0.attn"][1])
    metric(images).sum().backward()
    assert attn.metric.weight.grad is not None


def test_a_deep_copy_feeds_its_own_nodes():
    model = build()
    twin = copy.deepcopy(model)
    fired = []
    twin.blocks[0].attn.nodes.register_forward_hook(lambda *args: fired.append("twin"))
    model.blocks[0].attn.nodes.register_forward_hook(lambda *args: fired.append("original"))
    with torch.no_grad():
        twin(torch.randn(1, 1, 16, 16))
    assert fired == ["twin"]


def test_drop_path_rises_linearly_to_the_option():
    model = build("cct_7_3x1_32", 32, in_chans=3, drop_path_rate=0.3)
    assert isinstance(model.blocks[0].drop_path, nn.Identity)
    rates = [block.drop_path.drop_prob for block in model.blocks[1:]]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.3, 7)[1:])
    assert all(isinstance(block.drop_path, nn.Identity) for block in build(drop_path_rate=0.0).blocks)


def test_wrong_options_are_refused():
    with pytest.raises(TypeError, match=r"model 'cct_2_3x1_16' got unknown option\(s\) 'dpeth'"):
        build(dpeth=3)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        build(num_heads=3)
    with pytest.raises(ValueError, match="leaves no tokens"):
        build(img_size=2, padding=0)
