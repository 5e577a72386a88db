"""Every registered head maps tokens (B, s, d) to logits (B, c); names and options are checked."""

import pytest
import torch

from attnconv_pl.errors import ConfigError
from attnconv_pl.heads import ConvexHead, create_head, list_heads

CONVEX_HEADS = {"linear_attention", "gated_relu_attention", "mixer", "fno"}


@pytest.mark.parametrize("name", list_heads())
def test_every_head_maps_tokens_to_logits(name):
    head = create_head(name, dim=6, num_classes=4, tokens=5)
    logits = head(torch.randn(3, 5, 6))
    assert logits.shape == (3, 4)
    logits.sum().backward()
    assert all(parameter.grad is not None for parameter in head.parameters())
    assert isinstance(head, ConvexHead) == (name in CONVEX_HEADS)


def test_the_registry_lists_the_heads():
    assert set(list_heads()) == {"linear", "mlp", "attention"} | CONVEX_HEADS
    assert list_heads("*attention") == ["attention", "gated_relu_attention", "linear_attention"]


def test_an_unknown_head_is_named_with_the_known_ones():
    with pytest.raises(ConfigError, match="unknown head 'linear_atention'.*Did you mean 'linear_attention'"):
        create_head("linear_atention", 4, 3, 5)


def test_an_unknown_option_lists_the_head_options():
    with pytest.raises(ConfigError, match="head 'fno' got unknown option.*'gates'.*its options are: heads"):
        create_head("fno", 4, 3, 5, gates=2)


@pytest.mark.parametrize("name", ["gated_relu_attention", "mixer"])
def test_gated_heads_need_a_gate(name):
    with pytest.raises(ValueError, match="gates must be an integer >= 1"):
        create_head(name, 4, 3, 5, gates=0)
