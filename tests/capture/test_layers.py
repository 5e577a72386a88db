"""Layer selection: names and glob patterns over model.named_modules()."""

from __future__ import annotations

import pytest

from attnconv_pl.capture import resolve_layers


def test_resolve_layers_keeps_pattern_order_then_module_order_without_duplicates(net):
    layers = resolve_layers(net, ["head", "blocks.*.proj", "blocks.1.proj", "stem.0"])
    assert layers == ["head", "blocks.0.proj", "blocks.1.proj", "stem.0"]
    assert resolve_layers(net, ["blocks.?"]) == ["blocks.0", "blocks.1"]


def test_resolve_layers_error_names_the_pattern_and_lists_layers_compactly(net):
    with pytest.raises(ValueError) as err:
        resolve_layers(net, ["blocks.9*"])
    message = str(err.value)
    assert "no layer matches 'blocks.9*'; layers are: " in message
    assert "blocks.*.proj (x2)" in message
    assert "stem, stem.* (x2), blocks, blocks.* (x2)" in message and message.count("head") == 1


def test_resolve_layers_never_selects_the_model_itself(net):
    assert "" not in resolve_layers(net, ["*"])
