"""Forward hooks and the capture run: points as computed by hand, modes, hooks, autocast."""

from __future__ import annotations

import pytest
import torch
from capture_nets import SmallNet, probe_inputs
from torch import nn

from attnconv_pl.capture import ActivationRecorder, Projector, capture_activations, projection_matrix


def by_hand(net: SmallNet, x: torch.Tensor) -> dict[str, dict[str, torch.Tensor]]:
    with torch.no_grad():
        stem_out = net.stem(x)
        tokens = stem_out.flatten(2).transpose(1, 2)
        block0 = net.blocks[0].proj(tokens)
        logits = net.head(net.blocks[1].proj(block0).mean(dim=1))
    return {
        "stem": {"input": x.reshape(len(x), -1), "output": stem_out.reshape(len(x), -1)},
        "blocks.0": {"input": tokens.reshape(len(x), -1), "output": block0.reshape(len(x), -1)},
        "head": {"input": net.blocks[1].proj(block0).mean(dim=1), "output": logits},
    }


def test_capture_returns_inputs_and_outputs_as_computed_by_hand(net):
    x = probe_inputs()
    captured = capture_activations(
        net, ["stem", "blocks.0", "head"], x.split(5), projector=Projector(project_dim=1000)
    )
    expected = by_hand(net, x)
    assert list(captured) == ["stem", "blocks.0", "head"]
    for layer, sides in expected.items():
        for side, points in sides.items():
            assert captured[layer][side].dtype == torch.float32
            torch.testing.assert_close(captured[layer][side], points)


def test_capture_projects_wide_points_and_pools(net):
    x = probe_inputs()
    projector = Projector(project_dim=16, seed=2)
    captured = capture_activations(net, ["stem"], x.split(5), projector=projector)
    hand = by_hand(net, x)["stem"]
    torch.testing.assert_close(
        captured["stem"]["output"], hand["output"] @ projection_matrix(144, 16, 2, "stem")
    )
    torch.testing.assert_close(
        captured["stem"]["input"], hand["input"] @ projection_matrix(108, 16, 2, "stem")
    )
    pooled = capture_activations(net, ["stem"], [x], representation="pool", capture_inputs=False)
    assert list(pooled["stem"]) == ["output"]
    torch.testing.assert_close(pooled["stem"]["output"], net.stem(x).mean(dim=(2, 3)))


def test_capture_under_autocast_records_float32(net):
    x = probe_inputs()
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    captured = capture_activations(net, ["blocks.0"], [x], autocast=autocast)
    points = captured["blocks.0"]["output"]
    assert points.dtype == torch.float32
    torch.testing.assert_close(points, by_hand(net, x)["blocks.0"]["output"], atol=0.05, rtol=0.05)


def test_capture_restores_every_module_mode(net):
    net.train()
    net.blocks[1].eval()
    seen_training = []
    net.head.register_forward_hook(lambda module, args, out: seen_training.append(module.training))
    capture_activations(net, ["head"], [probe_inputs()])
    assert seen_training == [False]
    assert net.training and net.stem.training and not net.blocks[1].training


def test_hooks_are_removed_after_exit_and_after_an_exception(net):
    def hook_count() -> int:
        return sum(len(module._forward_hooks) for module in net.modules())

    with ActivationRecorder(net, ["stem", "blocks.?"]):
        assert hook_count() == 3
    assert hook_count() == 0
    with pytest.raises(RuntimeError, match="boom"), ActivationRecorder(net, ["stem"]):
        raise RuntimeError("boom")
    assert hook_count() == 0
    with pytest.raises(RuntimeError):
        capture_activations(net, ["stem"], [torch.randn(2, 5, 6, 6)])  # wrong channel count
    assert hook_count() == 0


def test_recorder_rejects_a_layer_called_twice_per_forward():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared, nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"\(points per layer: 0/input: 8, 0/output: 8, 3/input: 4, 3/output: 4\): "
                                         ".* called more than once"):
        capture_activations(model, ["0", "3"], [torch.randn(4, 3)])


def test_recorder_names_the_layers_that_never_ran_and_only_those():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(), nn.Linear(3, 2))
    model.forward = lambda x: model[2](model[0](x))  # the dropout is skipped
    with pytest.raises(ValueError, match=r"ran other than once per forward pass \(never ran: 1\): a layer skipped"):
        capture_activations(model, ["0", "1", "2"], [torch.randn(4, 3)])


def test_recorder_without_forward_pass_raises(net):
    with pytest.raises(ValueError, match="no activations were recorded"):
        capture_activations(net, ["stem"], [])


def test_recorder_is_reusable_as_context(net):
    recorder = ActivationRecorder(net, ["head"], capture_inputs=False)
    for n in (3, 5):
        with recorder, torch.no_grad():
            net(probe_inputs(n))
        assert recorder.result()["head"]["output"].shape == (n, 5)
