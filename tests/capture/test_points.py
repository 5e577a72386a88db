"""Points from a layer's tensor: the built-in reducers and the reducer registry."""

from __future__ import annotations

import pytest
import torch
from capture_nets import probe_inputs

from attnconv_pl.capture import (
    REDUCERS,
    REPRESENTATIONS,
    Projector,
    capture_activations,
    projection_matrix,
    register_reducer,
    to_points,
)


@pytest.mark.parametrize("representation", ["flatten", "pool", "tokens"])
def test_to_points_on_vectors_is_the_identity(representation):
    x = torch.randn(4, 7)
    assert torch.equal(to_points(x, representation), x)


def test_to_points_on_tokens():
    x = torch.randn(4, 3, 5)
    flat = torch.stack([torch.cat([x[i, t] for t in range(3)]) for i in range(4)])
    assert torch.equal(to_points(x, "flatten"), flat)
    assert torch.equal(to_points(x, "tokens"), flat)
    torch.testing.assert_close(to_points(x, "pool"), x.sum(dim=1) / 3)


def test_to_points_on_maps():
    x = torch.randn(2, 3, 4, 5)
    channel_major = torch.stack(
        [torch.cat([x[i, c].reshape(-1) for c in range(3)]) for i in range(2)]
    )
    pixels_channels_last = torch.stack(
        [torch.cat([x[i, :, h, w] for h in range(4) for w in range(5)]) for i in range(2)]
    )
    assert torch.equal(to_points(x, "flatten"), channel_major)
    assert torch.equal(to_points(x, "tokens"), pixels_channels_last)
    torch.testing.assert_close(to_points(x, "pool"), x.sum(dim=(2, 3)) / 20)


def test_to_points_takes_the_first_tensor_of_a_tuple():
    x = torch.randn(2, 3, 4)
    assert torch.equal(to_points((x, None), "flatten"), x.reshape(2, 12))
    assert torch.equal(to_points([None, x], "pool"), x.mean(dim=1))


def test_to_points_rejects_unknown_representation_and_tensorless_outputs():
    with pytest.raises(ValueError, match="unknown representation 'mean'"):
        to_points(torch.randn(2, 3), "mean")
    with pytest.raises(TypeError, match="holding no tensor"):
        to_points((None, 3), "flatten")


# the reducer registry


def test_the_built_in_representations_are_registered_reducers():
    assert REPRESENTATIONS == ("flatten", "pool", "tokens", "channel_norms") == tuple(REDUCERS)[:4]
    assert [REDUCERS[name].projection for name in REPRESENTATIONS] == ["point", "point", "token", None]
    x = torch.randn(2, 3, 4, 5)
    assert torch.equal(REDUCERS["pool"](x), to_points(x, "pool"))
    torch.testing.assert_close(to_points(x, "channel_norms"), channel_norms(x))
    gate = torch.rand(2, 3, 1, 1)
    torch.testing.assert_close(to_points(gate, "channel_norms"), gate.flatten(1))  # a gate's norm is the gate


def channel_norms(x: torch.Tensor) -> torch.Tensor:
    """Per-channel L2 norms: (B, C, H, W) -> (B, C)."""
    return x.flatten(2).norm(dim=2)


@pytest.fixture
def registered():
    """Registers `channel_norms` again, unprojected and projected, and unregisters both afterwards."""
    register_reducer("norms", projection=None)(channel_norms)
    register_reducer("norms_projected")(channel_norms)
    yield
    del REDUCERS["norms"], REDUCERS["norms_projected"]


def test_a_registered_reducer_is_captured_through(net, registered):
    x = probe_inputs()
    projector = Projector(project_dim=2, seed=3)
    captured = capture_activations(
        net, ["stem"], x.split(5), representation="norms", projector=projector
    )
    with torch.no_grad():
        stem_out = net.stem(x)
    assert captured["stem"]["output"].shape == (12, 4)  # wider than project_dim, not projected
    torch.testing.assert_close(captured["stem"]["output"], channel_norms(stem_out))
    torch.testing.assert_close(captured["stem"]["input"], channel_norms(x))
    projected = capture_activations(
        net, ["stem"], [x], representation="norms_projected", projector=projector,
        capture_inputs=False,
    )
    torch.testing.assert_close(
        projected["stem"]["output"], channel_norms(stem_out) @ projection_matrix(4, 2, 3, "stem")
    )


def test_register_reducer_refuses_a_taken_name_and_an_unknown_projection():
    with pytest.raises(ValueError, match="a reducer named 'flatten' is already registered"):
        register_reducer("flatten")(channel_norms)
    with pytest.raises(ValueError, match="unknown projection 'channel'"):
        register_reducer("norms", projection="channel")
    assert tuple(REDUCERS) == REPRESENTATIONS
    with pytest.raises(ValueError, match=r"expected one of \('flatten', 'pool', 'tokens', 'channel_norms'\)"):
        to_points(torch.randn(2, 3, 4), "norms")
